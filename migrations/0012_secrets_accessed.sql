-- What a job's dispatch resolved (docs/secrets.md, "What runs show shows"): the declared
-- environments and what they matched, the names of the secrets delivered, and what was withheld
-- from an untrusted job and why. Names only: a secret's value is never stored outside
-- scoped_secrets. (Each step's secretsAccessed already has its column, execution_steps.)
ALTER TABLE execution_jobs ADD COLUMN secrets_resolution jsonb NULL;
