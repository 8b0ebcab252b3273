use std::collections::VecDeque;

use super::*;

/// Answers from a script; records every prompt and message, and which prompts hid input.
#[derive(Default)]
struct Script {
    answers: VecDeque<&'static str>,
    transcript: Vec<String>,
    secret_prompts: Vec<String>,
}

impl Script {
    fn new(answers: &[&'static str]) -> Script {
        Script {
            answers: answers.iter().copied().collect(),
            ..Script::default()
        }
    }
    fn text(&self) -> String {
        self.transcript.join("\n")
    }
}

impl Console for Script {
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.transcript.push(prompt.to_owned());
        Ok(self.answers.pop_front().map(str::to_owned))
    }
    fn ask_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.secret_prompts.push(prompt.to_owned());
        self.ask(prompt)
    }
    fn say(&mut self, text: &str) {
        self.transcript.push(text.to_owned());
    }
}

/// Only `postgresql://good` connects; only `/app.pem` can be read.
struct FakeChecks;

impl Checks for FakeChecks {
    fn database(&self, url: &str) -> Result<String, String> {
        if url.starts_with("postgresql://good") {
            Ok("15.6".into())
        } else {
            Err("cannot connect to PostgreSQL at postgresql://bad: Connection refused".into())
        }
    }
    fn read_file(&self, path: &str) -> Result<String, String> {
        match path {
            "/app.pem" => {
                Ok("-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n".into())
            }
            "/not-a-key.txt" => Ok("hello".into()),
            _ => Err("No such file or directory (os error 2)".into()),
        }
    }
    /// `postgresql://good-taken…` holds an instance whose key is 0x11 × 32.
    fn existing_instance(&self, url: &str) -> Result<Option<Existing>, String> {
        Ok(url.contains("taken").then(|| Existing {
            migrations: 9,
            active_admin_tokens: 1,
            sealed_secrets: 2,
            bootstrap_hash: Some(crate::crypto::hash_token(OTHER_TOKEN)),
        }))
    }
    fn key_opens(&self, _url: &str, key: &str) -> Result<bool, String> {
        Ok(key == OTHER_KEY)
    }
    /// Ports 5000 and 5001 are taken.
    fn port_in_use(&self, port: u16) -> bool {
        port == 5000 || port == 5001
    }
}

const OTHER_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const OTHER_TOKEN: &str = "the-other-instances-bootstrap-token";

fn options() -> Options {
    Options {
        force_new_instance: false,
        github_api_url: DEFAULT_GITHUB_API_URL.to_owned(),
    }
}

fn run_script(
    given: &Vars,
    github_given: bool,
    answers: &[&'static str],
) -> (Answer<Outcome>, Script) {
    run_with(given, github_given, answers, &options())
}

fn run_with(
    given: &Vars,
    github_given: bool,
    answers: &[&'static str],
    options: &Options,
) -> (Answer<Outcome>, Script) {
    let mut script = Script::new(answers);
    let out = run(
        given,
        github_given,
        "/srv/data/storage",
        options,
        &mut script,
        &FakeChecks,
    );
    (out, script)
}

#[test]
fn independent_with_defaults_and_a_github_source() {
    let (out, script) = run_script(
        &Vars::new(),
        false,
        &[
            "independent",
            "postgresql://bad/kici",
            "postgresql://good/kici",
            "",  // port
            "",  // secret key: generate
            "",  // admin token: generate
            "",  // storage: filesystem
            "",  // folder: default
            "y", // add a GitHub source
            "main-org",
            "", // GitHub API URL: default
            "12x",
            "12345",
            "/missing.pem",
            "/not-a-key.txt",
            "/app.pem",
            "whsec",
            "", // bind address: 0.0.0.0, GitHub sends webhooks
        ],
    );
    let out = out.unwrap();
    let text = script.text();
    assert!(text.contains("  Cannot connect: cannot connect to PostgreSQL at postgresql://bad: Connection refused"), "{text}");
    assert!(text.contains("  Connected: PostgreSQL 15.6"), "{text}");
    assert!(text.contains("\"12x\" is not a GitHub App ID"), "{text}");
    assert!(
        text.contains("cannot read the private key from /missing.pem: No such file"),
        "{text}"
    );
    assert!(
        text.contains("/not-a-key.txt is not a PEM private key"),
        "{text}"
    );
    let get = |k: &str| out.vars.get(k).map(String::as_str);
    assert_eq!(get("KICI_MODE"), Some("independent"));
    assert_eq!(get("KICI_DATABASE_URL"), Some("postgresql://good/kici"));
    assert_eq!(get("KICI_PORT"), Some("4000"));
    assert_eq!(get("KICI_GITHUB_API_URL"), Some(DEFAULT_GITHUB_API_URL));
    assert_eq!(get("KICI_BIND_ADDRESS"), Some("0.0.0.0"));
    assert_eq!(
        get("KICI_SECRET_KEY"),
        None,
        "left for the installer to generate"
    );
    assert_eq!(get("KICI_STORAGE_TYPE"), Some("filesystem"));
    assert_eq!(get("KICI_STORAGE_FS_PATH"), Some("/srv/data/storage"));
    assert!(
        !text.contains("Platform URL") && !text.contains("Platform token"),
        "{text}"
    );
    let gh = out.github.unwrap();
    assert_eq!(
        (gh.name.as_str(), gh.app_id.as_str()),
        ("main-org", "12345")
    );
    assert!(gh.private_key.ends_with("-----END RSA PRIVATE KEY-----"));
    assert_eq!(gh.webhook_secret.as_deref(), Some("whsec"));
    // Secrets are asked without echo; nothing else is.
    assert_eq!(
        script.secret_prompts.len(),
        3,
        "{:?}",
        script.secret_prompts
    );
    assert!(script
        .secret_prompts
        .iter()
        .all(|p| p.starts_with("Secret key")
            || p.starts_with("Bootstrap admin token")
            || p.starts_with("Webhook secret")));
}

#[test]
fn platform_mode_asks_for_the_platform_and_s3_storage() {
    let (out, _) = run_script(
        &Vars::new(),
        false,
        &[
            "",
            "postgresql://good/kici",
            "4100",
            "0102030405060708091011121314151617181920212223242526272829303132",
            "my-own-admin-token-1234",
            "",
            "", // platform token: required
            "ptok",
            "s3",
            "ci-cache",
            "http://127.0.0.1:9000",
            "",
            "",
            "n",
            "", // bind address
        ],
    );
    let out = out.unwrap();
    let get = |k: &str| out.vars.get(k).map(String::as_str);
    assert_eq!(get("KICI_MODE"), Some("platform"));
    assert_eq!(get("KICI_PORT"), Some("4100"));
    assert_eq!(
        get("KICI_BOOTSTRAP_ADMIN_TOKEN"),
        Some("my-own-admin-token-1234")
    );
    assert_eq!(get("KICI_PLATFORM_URL"), Some(DEFAULT_PLATFORM_URL));
    assert_eq!(get("KICI_PLATFORM_TOKEN"), Some("ptok"));
    assert_eq!(get("KICI_STORAGE_BUCKET"), Some("ci-cache"));
    assert_eq!(get("KICI_STORAGE_ENDPOINT"), Some("http://127.0.0.1:9000"));
    assert_eq!(get("KICI_STORAGE_REGION"), Some("us-east-1"));
    assert_eq!(get("KICI_STORAGE_FORCE_PATH_STYLE"), Some("true"));
    assert!(out.github.is_none());
    assert_eq!(get("KICI_BIND_ADDRESS"), Some("0.0.0.0"));
}

#[test]
fn flags_answer_their_questions_and_a_bad_flag_url_is_asked_again() {
    let mut given = Vars::new();
    for (k, v) in [
        ("KICI_MODE", "independent"),
        ("KICI_DATABASE_URL", "postgresql://bad/kici"),
        ("KICI_PORT", "4200"),
        ("KICI_SECRET_KEY", "x"),
        ("KICI_BOOTSTRAP_ADMIN_TOKEN", "y"),
        ("KICI_STORAGE_TYPE", ""),
        ("KICI_BIND_ADDRESS", "127.0.0.1"),
    ] {
        given.insert(k.into(), v.into());
    }
    let (out, script) = run_script(&given, true, &["postgresql://good/db"]);
    let out = out.unwrap();
    assert_eq!(out.vars["KICI_DATABASE_URL"], "postgresql://good/db");
    assert!(
        !out.vars.contains_key("KICI_PORT"),
        "the flag's value stays the flag's"
    );
    let text = script.text();
    assert!(text.contains("  --database-url: Cannot connect"), "{text}");
    assert_eq!(
        script
            .transcript
            .iter()
            .filter(|l| l.ends_with(": "))
            .count(),
        1,
        "{text}"
    );
}

/// The answers up to the database, for an independent instance.
const TO_DATABASE: [&str; 2] = ["independent", "postgresql://good-taken/kici"];

#[test]
fn a_database_of_another_instance_needs_its_key_and_token() {
    // Without the key: asked again until the input ends — refused, nothing generated.
    let answers = [
        &TO_DATABASE[..],
        &[
            "",
            "2222222222222222222222222222222222222222222222222222222222222222",
        ],
    ]
    .concat();
    let (out, script) = run_script(&Vars::new(), false, &answers);
    let e = out.unwrap_err().to_string();
    assert!(e.contains("Secret key of that instance"), "{e}");
    let text = script.text();
    assert!(
        text.contains("already holds a KiCI orchestrator instance (9 migrations applied, 1 active admin tokens, 2 sealed secrets)"),
        "{text}"
    );
    assert!(text.contains("--force-new-instance"), "{text}");
    assert!(
        text.contains("does not decrypt the instance's stored secrets"),
        "{text}"
    );

    // With the key and the bootstrap token: joined, and those are what the env file gets.
    let answers = [
        &TO_DATABASE[..],
        &[
            OTHER_KEY,
            "not-the-token-at-all",
            OTHER_TOKEN,
            "",
            "",
            "",
            "n",
            "",
        ],
    ]
    .concat();
    let (out, script) = run_script(&Vars::new(), false, &answers);
    let out = out.unwrap_or_else(|e| panic!("{e}\n{}", script.text()));
    assert_eq!(out.vars["KICI_SECRET_KEY"], OTHER_KEY);
    assert_eq!(out.vars["KICI_BOOTSTRAP_ADMIN_TOKEN"], OTHER_TOKEN);
    assert!(script
        .text()
        .contains("not the instance's bootstrap admin token"));
    assert!(
        !script.text().contains("Enter generates one"),
        "no new key or token is offered: {}",
        script.text()
    );
    // The instance joined is independent without GitHub: loopback by default, and why.
    assert_eq!(out.vars["KICI_BIND_ADDRESS"], "127.0.0.1");
    assert!(script
        .text()
        .contains("no Platform or GitHub App sends it anything"));
}

#[test]
fn force_new_instance_says_what_breaks_and_asks_the_usual_questions() {
    let answers = [&TO_DATABASE[..], &["", "", "", "", "", "n", ""]].concat();
    let opts = Options {
        force_new_instance: true,
        ..options()
    };
    let (out, script) = run_with(&Vars::new(), false, &answers, &opts);
    let out = out.unwrap_or_else(|e| panic!("{e}\n{}", script.text()));
    assert!(!out.vars.contains_key("KICI_SECRET_KEY"), "generated later");
    let text = script.text();
    assert!(text.contains("2 sealed secrets"), "{text}");
    assert!(text.contains("bootstrap admin token is replaced"), "{text}");
}

#[test]
fn a_taken_port_is_refused_with_the_next_free_one() {
    let answers = [
        "independent",
        "postgresql://good/kici",
        "5000",
        "",
        "",
        "",
        "",
        "",
        "n",
        "10.0.0.300",
        "::1",
    ];
    let (out, script) = run_script(&Vars::new(), false, &answers);
    let out = out.unwrap_or_else(|e| panic!("{e}\n{}", script.text()));
    let text = script.text();
    assert!(
        text.contains("port 5000 is in use on this machine: pick another, e.g. 5002"),
        "{text}"
    );
    assert_eq!(out.vars["KICI_PORT"], "4000");
    assert!(
        text.contains("\"10.0.0.300\" is not an IP address"),
        "{text}"
    );
    assert_eq!(out.vars["KICI_BIND_ADDRESS"], "::1");
    assert_eq!(first_free_port(5000, &FakeChecks), 5002);
    assert_eq!(first_free_port(4000, &FakeChecks), 4000);
}

#[test]
fn the_github_api_url_defaults_to_the_environments() {
    let opts = Options {
        github_api_url: "https://ghe.example.com/api/v3".into(),
        ..options()
    };
    let answers = [
        "independent",
        "postgresql://good/kici",
        "",
        "",
        "",
        "none",
        "y",
        "",
        "", // the API URL: the environment's
        "1",
        "/app.pem",
        "",
        "",
    ];
    let (out, script) = run_with(&Vars::new(), false, &answers, &opts);
    let out = out.unwrap_or_else(|e| panic!("{e}\n{}", script.text()));
    assert_eq!(
        out.vars["KICI_GITHUB_API_URL"],
        "https://ghe.example.com/api/v3"
    );
    assert!(script.text().contains(
        "GitHub API URL (GitHub Enterprise: https://HOST/api/v3) [https://ghe.example.com/api/v3]"
    ));
}

#[test]
fn input_ending_early_names_the_question() {
    let (out, _) = run_script(&Vars::new(), false, &["independent"]);
    let e = out.unwrap_err().to_string();
    assert!(
        e.starts_with("the wizard's input ended before the question \"PostgreSQL database URL"),
        "{e}"
    );
}

#[test]
fn answer_parsers() {
    assert_eq!(parse_mode("3").unwrap(), "independent");
    assert!(parse_mode("local")
        .unwrap_err()
        .contains("platform, hybrid or independent"));
    assert_eq!(parse_port("").unwrap(), "4000");
    assert!(parse_port("0").is_err() && parse_port("+80").is_err() && parse_port("70000").is_err());
    assert_eq!(parse_secret_key("").unwrap(), None);
    assert!(parse_secret_key("abc")
        .unwrap_err()
        .starts_with("not a usable secret key"));
    assert!(parse_admin_token("short").is_err());
    assert!(parse_platform_url("ftp://x").is_err());
    assert_eq!(
        parse_platform_url("https://p.example").unwrap(),
        "https://p.example"
    );
}
