//! The admin API of workflow secrets and environments against a real daemon, with the
//! reference CLI's exact request bodies: answers, roles, reserved names, the audit log, purge,
//! and no value ever answered or stored in plaintext.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    daemon::{base_env, Daemon},
    pg::PgCluster,
    webhook::admin,
};

const OWNER: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// Test values: none may ever come back in an answer or sit in plaintext at rest.
const VALUES: [&str; 3] = ["api-db-password-1", "api-npm-token-1", "api-db-password-2"];

pub(crate) fn daemon_env(url: &str) -> Vec<(String, String)> {
    let mut env = base_env(url);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env
}

pub(crate) fn token(d: &Daemon, role: &str, routing_key: Option<&str>) -> String {
    let body = json!({ "label": format!("{role}-token"), "role": role, "routingKey": routing_key });
    let r = admin(d, OWNER, "POST", "/tokens", body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["token"].as_str().unwrap().to_owned()
}

/// One call; asserts no test value is in the answer, returns (status, JSON body).
fn api(d: &Daemon, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let r = admin(d, token, method, path, body);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    for v in VALUES {
        assert!(
            !text.contains(v),
            "{method} {path} answered a secret value: {text}"
        );
    }
    (r.status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn no_body() -> Value {
    Value::Null
}

#[test]
fn secret_and_environment_routes_with_the_reference_bodies() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let d = Daemon::start(&daemon_env(&url));
    d.wait_ready_status(200, Duration::from_secs(10));
    let admin_t = token(&d, "admin", None);
    let auditor = token(&d, "auditor", None);
    let scoped = token(&d, "admin", Some("github:1"));

    // secret set: PUT /secrets/:orgId/:scope/:key, the scope encodeURIComponent-ed.
    let set = |t: &str, path: &str, value: &str| api(&d, t, "PUT", path, json!({ "value": value }));
    let set_ok = (200, json!({ "set": true }));
    assert_eq!(
        set(&admin_t, "/secrets/acme/aws%2Fprod/DB_PASSWORD", VALUES[0]),
        set_ok
    );
    assert_eq!(
        set(&admin_t, "/secrets/acme/__org__/NPM_TOKEN", VALUES[1]),
        set_ok
    );
    assert_eq!(
        set(&admin_t, "/secrets/acme/aws%2Fprod/DB_PASSWORD", VALUES[2]),
        set_ok
    );
    assert_eq!(
        api(&d, &admin_t, "GET", "/secrets/scopes?orgId=acme", no_body()),
        (200, json!({ "scopes": ["__org__", "aws/prod"] }))
    );
    assert_eq!(
        api(
            &d,
            &admin_t,
            "GET",
            "/secrets/keys?orgId=acme&scope=aws%2Fprod",
            no_body()
        ),
        (200, json!({ "keys": ["DB_PASSWORD"] }))
    );
    assert_eq!(
        api(&d, &admin_t, "GET", "/secrets/scopes", no_body()),
        (400, json!({ "error": "orgId required" }))
    );
    assert_eq!(
        api(&d, &admin_t, "GET", "/secrets/keys?orgId=acme", no_body()),
        (400, json!({ "error": "orgId and scope required" }))
    );

    // Roles and scoped tokens.
    let (status, body) = set(&auditor, "/secrets/acme/x/K", "v");
    assert_eq!(status, 403);
    assert_eq!(
        body["error"],
        r#"Role "auditor" does not have permission "secret.write""#
    );
    let (status, body) = api(&d, &auditor, "GET", "/secrets/scopes?orgId=acme", no_body());
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (
            403,
            r#"Role "auditor" does not have permission "secret.read""#
        )
    );
    let (status, body) = set(&scoped, "/secrets/acme/github:1/K", "v");
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unscoped admin token"),
        "{body}"
    );
    let (status, body) = api(&d, &admin_t, "POST", "/rotate-key", no_body());
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (403, r#"Role "admin" does not have permission "key.rotate""#)
    );
    let (status, body) = api(
        &d,
        &admin_t,
        "POST",
        "/secrets/purge",
        json!({ "orgId": "acme" }),
    );
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (
            403,
            r#"Role "admin" does not have permission "secret.purge""#
        )
    );

    // Internal owners and scopes are out of reach; bad names say why.
    let (status, body) = set(
        &admin_t,
        "/secrets/__system__/__source__%2Fx/privateKey",
        "v",
    );
    assert_eq!(status, 400);
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("reserved"),
        "{body}"
    );
    let (status, body) = set(&admin_t, "/secrets/acme/__generic__%2Fx/secret", "v");
    assert_eq!(status, 400, "{body}");
    let (status, body) = api(
        &d,
        &admin_t,
        "PUT",
        "/secrets/acme/s/K",
        json!({ "value": 5 }),
    );
    assert_eq!(
        (status, body["details"][0]["path"].as_str()),
        (400, Some("value"))
    );
    let big = "v".repeat(64 * 1024 + 1);
    let (status, body) = api(
        &d,
        &admin_t,
        "PUT",
        "/secrets/acme/s/K",
        json!({ "value": big }),
    );
    assert_eq!(status, 400, "{body}");

    // environment create / bind, as the reference CLI sends them.
    let (status, body) = api(
        &d,
        &admin_t,
        "POST",
        "/environments",
        json!({ "orgId": "acme", "name": "prod" }),
    );
    assert_eq!((status, &body["created"]), (201, &json!(true)), "{body}");
    let env_id = body["envId"].as_str().unwrap().to_owned();
    assert_eq!(
        api(
            &d,
            &admin_t,
            "POST",
            "/environments",
            json!({ "orgId": "acme", "name": "prod" })
        ),
        (200, json!({ "envId": env_id, "created": false }))
    );
    let glob = json!({ "orgId": "acme", "name": "preview", "type": "glob", "globPattern": "preview-*", "allowUntrusted": true });
    assert_eq!(api(&d, &admin_t, "POST", "/environments", glob).0, 201);
    let (status, body) = api(
        &d,
        &admin_t,
        "POST",
        "/environments",
        json!({ "orgId": "acme", "name": "x", "requiredReviewers": ["alice"] }),
    );
    assert_eq!(
        (status, body["details"][0]["path"].as_str()),
        (400, Some("requiredReviewers")),
        "{body}"
    );
    // A client sending every field with its empty default sets no rule: accepted.
    let defaults = json!({ "orgId": "acme", "name": "staging", "type": "fixed", "enabled": true,
        "branchRestrictions": [], "requiredReviewers": [], "waitTimerSeconds": 0,
        "holdExpirySeconds": 86400, "minimumTrust": null, "allowLocalExecution": false });
    assert_eq!(api(&d, &admin_t, "POST", "/environments", defaults).0, 201);
    let bind = json!({ "orgId": "acme", "scopePattern": "aws/prod", "hostPattern": "**" });
    assert_eq!(
        api(
            &d,
            &admin_t,
            "POST",
            "/environments/prod/bind",
            bind.clone()
        ),
        (201, json!({ "created": true }))
    );
    assert_eq!(
        api(&d, &admin_t, "POST", "/environments/prod/bind", bind),
        (200, json!({ "created": false }))
    );
    assert_eq!(
        api(
            &d,
            &admin_t,
            "POST",
            "/environments/nope/bind",
            json!({ "orgId": "acme", "scopePattern": "a" })
        ),
        (
            404,
            json!({ "error": "environment not found (org=acme, name=nope)" })
        )
    );
    let (status, _) = api(
        &d,
        &admin_t,
        "POST",
        "/environments/prod/bind",
        json!({ "orgId": "acme", "scopePattern": "__org__" }),
    );
    assert_eq!(status, 400);
    assert_eq!(
        api(
            &d,
            &admin_t,
            "PUT",
            "/environments/prod/variables/REGION?orgId=acme",
            json!({ "value": "eu-west-1" })
        ),
        (200, json!({ "set": true }))
    );
    let (status, _) = api(
        &d,
        &auditor,
        "GET",
        "/environments?orgId=acme&includeSecrets=true",
        no_body(),
    );
    assert_eq!(status, 403, "auditors hold no secret.read");
    let (status, list) = api(
        &d,
        &admin_t,
        "GET",
        "/environments?orgId=acme&includeSecrets=true",
        no_body(),
    );
    assert_eq!(status, 200, "{list}");
    let names: Vec<_> = list["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["preview", "prod", "staging"]);
    assert_eq!(
        list["environments"][1]["secret_keys"],
        json!(["DB_PASSWORD"])
    );
    assert_eq!(list["environments"][0]["glob_pattern"], "preview-*");
    assert_eq!(list["environments"][0]["allow_untrusted"], true);
    let (status, show) = api(
        &d,
        &admin_t,
        "GET",
        "/environments/prod?orgId=acme",
        no_body(),
    );
    assert_eq!(status, 200);
    assert_eq!(show["environment"]["id"], env_id.as_str());
    assert_eq!(show["bindings"][0]["scope_pattern"], "aws/prod");
    assert_eq!(show["variables"][0]["value"], "eu-west-1");
    assert_eq!(
        api(
            &d,
            &admin_t,
            "DELETE",
            "/environments/prod/variables/REGION?orgId=acme",
            no_body()
        ),
        (200, json!({ "deleted": true }))
    );
    assert_eq!(
        api(
            &d,
            &admin_t,
            "POST",
            "/environments/prod/unbind",
            json!({ "orgId": "acme", "scopePattern": "aws/prod" })
        ),
        (200, json!({ "deleted": true }))
    );
    assert_eq!(
        api(
            &d,
            &admin_t,
            "DELETE",
            "/environments/preview?orgId=acme",
            no_body()
        ),
        (200, json!({ "deleted": true }))
    );
    assert_eq!(
        api(
            &d,
            &admin_t,
            "DELETE",
            "/environments/preview?orgId=acme",
            no_body()
        )
        .0,
        404
    );

    // delete answers deleted:true even when absent (the reference's answer), existed says which.
    assert_eq!(
        api(
            &d,
            &admin_t,
            "DELETE",
            "/secrets/acme/aws%2Fprod/DB_PASSWORD",
            no_body()
        ),
        (200, json!({ "deleted": true, "existed": true }))
    );
    assert_eq!(
        api(
            &d,
            &admin_t,
            "DELETE",
            "/secrets/acme/aws%2Fprod/DB_PASSWORD",
            no_body()
        ),
        (200, json!({ "deleted": true, "existed": false }))
    );

    // The audit log: who (label and role), what (org, scope, key), never a value.
    let (status, audit) = api(&d, &auditor, "GET", "/audit?orgId=acme&limit=10", no_body());
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<_> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "deleteSecret",
            "deleteSecret",
            "setSecret",
            "setSecret",
            "setSecret"
        ]
    );
    let last_set = &entries[2];
    assert_eq!(last_set["token_label"], "admin-token");
    assert_eq!(last_set["role"], "admin");
    assert_eq!(last_set["org_id"], "acme");
    assert_eq!(last_set["context_name"], "aws/prod");
    assert_eq!(last_set["secret_keys"], json!(["DB_PASSWORD"]));
    let (_, only) = api(
        &d,
        &auditor,
        "GET",
        "/audit?action=setSecret&limit=1",
        no_body(),
    );
    assert_eq!(only["entries"].as_array().unwrap().len(), 1);
    let (status, body) = api(&d, &auditor, "GET", "/audit?since=yesterday", no_body());
    assert_eq!(
        (status, body["details"][0]["path"].as_str()),
        (400, Some("since"))
    );

    // Purge is the owner's, and never reaches the orchestrator's own secrets.
    pg.psql(&url, "INSERT INTO scoped_secrets (org_id, scope, key, encrypted_value) VALUES ('__system__', '__source__/x', 'k', 'v1:AAAA')");
    assert_eq!(
        api(
            &d,
            OWNER,
            "POST",
            "/secrets/purge",
            json!({ "orgId": "acme" })
        ),
        (200, json!({ "deleted": 1 }))
    );
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM scoped_secrets"), "1");

    pg.assert_dump_lacks(&url, &VALUES);
}
