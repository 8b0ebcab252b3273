//! Tests of `resolve`: precedence, globs, trust, errors, and a never-panic property.

use super::*;
use serde_json::json;

fn env(name: &str, scopes: &[&str]) -> EnvRecord {
    EnvRecord {
        name: name.into(),
        enabled: true,
        bindings: scopes
            .iter()
            .map(|s| Binding {
                scope_pattern: (*s).into(),
                host_pattern: "**".into(),
            })
            .collect(),
        ..EnvRecord::default()
    }
}

fn secret(scope: &str, key: &str) -> SecretName {
    SecretName {
        scope: scope.into(),
        key: key.into(),
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// key → scope of the winner.
fn winners(plan: &Plan, cat: &Catalogue) -> BTreeMap<String, String> {
    plan.secrets
        .iter()
        .map(|(k, &i)| (k.clone(), cat.secrets[i].scope.clone()))
        .collect()
}

fn catalogue() -> Catalogue {
    Catalogue {
        org: "acme".into(),
        environments: vec![
            env("prod", &["aws/prod"]),
            env("staging", &["aws/staging", "shared/**"]),
        ],
        secrets: vec![
            secret(ORG_WIDE_SCOPE, "NPM_TOKEN"),
            secret(ORG_WIDE_SCOPE, "DB_PASSWORD"),
            secret("aws/prod", "DB_PASSWORD"),
            secret("aws/prod", "AWS_KEY"),
            secret("aws/staging", "AWS_KEY"),
            secret("shared", "SLACK"),
            secret("shared/chat", "SLACK"),
            secret("aws/dev", "DEV_ONLY"),
            secret("__source__/x", "privateKey"),
            secret("aws/prod", "__empty__"),
        ],
    }
}

#[test]
fn an_environment_gets_its_scope_over_the_org_wide_secrets() {
    let cat = catalogue();
    let plan = resolve(&names(&["prod"]), &Trust::Trusted, &cat).unwrap();
    let got = winners(&plan, &cat);
    assert_eq!(
        got,
        BTreeMap::from([
            ("AWS_KEY".into(), "aws/prod".into()),
            ("DB_PASSWORD".into(), "aws/prod".into()),
            ("NPM_TOKEN".into(), ORG_WIDE_SCOPE.into()),
        ])
    );
    assert_eq!(plan.environment.as_deref(), Some("prod"));
    assert_eq!(plan.layers.len(), 2);
    assert_eq!(plan.layers[0].context, ORG_WIDE_CONTEXT);
    assert_eq!(plan.layers[1].context, "prod");
    assert_eq!(plan.withheld, None);
}

#[test]
fn later_environments_win_and_deeper_scopes_win_inside_one() {
    let cat = catalogue();
    let plan = resolve(&names(&["prod", "staging"]), &Trust::Trusted, &cat).unwrap();
    let got = winners(&plan, &cat);
    assert_eq!(got["AWS_KEY"], "aws/staging", "the later environment wins");
    assert_eq!(
        got["DB_PASSWORD"], "aws/prod",
        "staging has none: prod's stays"
    );
    assert_eq!(got["SLACK"], "shared/chat", "deeper scope of shared/**");
    assert!(!got.contains_key("DEV_ONLY"));
    assert!(
        !got.contains_key("privateKey"),
        "internal scopes never resolve"
    );
    assert!(!got.contains_key("__empty__"));
    let plan = resolve(&names(&["staging", "prod"]), &Trust::Trusted, &cat).unwrap();
    assert_eq!(winners(&plan, &cat)["AWS_KEY"], "aws/prod");
    assert_eq!(plan.environment.as_deref(), Some("staging"));
}

#[test]
fn equal_depths_pick_the_scope_that_sorts_first() {
    let cat = Catalogue {
        org: "acme".into(),
        environments: vec![env("e", &["b/*", "a/*"])],
        secrets: vec![secret("b/x", "K"), secret("a/x", "K"), secret("c", "K")],
    };
    let plan = resolve(&names(&["e"]), &Trust::Trusted, &cat).unwrap();
    assert_eq!(winners(&plan, &cat)["K"], "a/x");
}

#[test]
fn glob_environments_resolve_and_exact_names_come_first() {
    let mut preview = env("previews", &["preview"]);
    preview.glob = Some("preview-*".into());
    preview.variables.insert("TIER".into(), "preview".into());
    let mut exact = env("preview-main", &["aws/prod"]);
    exact.variables.insert("TIER".into(), "main".into());
    let cat = Catalogue {
        org: "acme".into(),
        environments: vec![exact, preview],
        secrets: vec![secret("preview", "URL"), secret("aws/prod", "KEY")],
    };
    let plan = resolve(&names(&["preview-42"]), &Trust::Trusted, &cat).unwrap();
    assert_eq!(winners(&plan, &cat)["URL"], "preview");
    assert_eq!(plan.environments[0].record, "previews");
    assert_eq!(plan.environment.as_deref(), Some("preview-42"));
    assert_eq!(plan.variables["TIER"], "preview");
    // A glob environment's own name resolves to it too.
    let plan = resolve(&names(&["previews"]), &Trust::Trusted, &cat).unwrap();
    assert_eq!(plan.environments[0].record, "previews");
    assert_eq!(winners(&plan, &cat)["URL"], "preview");
    let plan = resolve(&names(&["preview-main"]), &Trust::Trusted, &cat).unwrap();
    assert_eq!(winners(&plan, &cat)["KEY"], "aws/prod");
    assert_eq!(plan.variables["TIER"], "main");
}

#[test]
fn variables_fold_in_declared_order() {
    let mut a = env("a", &[]);
    a.variables = BTreeMap::from([("R".into(), "a".into()), ("ONLY_A".into(), "1".into())]);
    let mut b = env("b", &[]);
    b.variables = BTreeMap::from([("R".into(), "b".into())]);
    let cat = Catalogue {
        org: "acme".into(),
        environments: vec![a, b],
        secrets: vec![],
    };
    let plan = resolve(&names(&["a", "b"]), &Trust::Trusted, &cat).unwrap();
    assert_eq!(plan.variables["R"], "b");
    assert_eq!(plan.variables["ONLY_A"], "1");
    assert!(plan.secrets.is_empty() && plan.layers.is_empty());
}

#[test]
fn missing_disabled_and_too_many_environments_fail_with_the_name() {
    let cat = catalogue();
    let e = resolve(&names(&["prod", "nope"]), &Trust::Trusted, &cat).unwrap_err();
    assert_eq!(
        e,
        ResolveError::Missing {
            org: "acme".into(),
            name: "nope".into()
        }
    );
    let text = e.to_string();
    assert!(
        text.contains("\"nope\" does not exist in its org \"acme\""),
        "{text}"
    );
    assert!(
        text.contains("`kici-admin environment create --org acme --name nope`"),
        "{text}"
    );
    let mut off = catalogue();
    off.environments[0].enabled = false;
    let e = resolve(&names(&["prod"]), &Trust::Trusted, &off).unwrap_err();
    assert!(e.to_string().contains("\"prod\" is disabled"), "{e}");
    let many: Vec<String> = (0..=MAX_ENVIRONMENTS).map(|i| format!("e{i}")).collect();
    let e = resolve(&many, &Trust::Trusted, &cat).unwrap_err();
    assert_eq!(
        e,
        ResolveError::TooMany {
            count: MAX_ENVIRONMENTS + 1
        }
    );
    // At the limit, the count is fine (and the first missing name is what fails).
    let e = resolve(&many[..MAX_ENVIRONMENTS], &Trust::Trusted, &cat).unwrap_err();
    assert!(
        matches!(e, ResolveError::Missing { ref name, .. } if name == "e0"),
        "{e}"
    );
}

#[test]
fn untrusted_jobs_get_nothing_unless_the_environment_allows_it() {
    let mut cat = catalogue();
    cat.environments[0]
        .variables
        .insert("REGION".into(), "eu".into());
    let fork = Trust::Untrusted("fork".into());
    let plan = resolve(&names(&["prod"]), &fork, &cat).unwrap();
    assert!(plan.secrets.is_empty() && plan.variables.is_empty() && plan.layers.is_empty());
    assert_eq!(plan.environment.as_deref(), Some("prod"));
    assert!(!plan.environments[0].delivered);
    let w = plan.withheld.unwrap();
    assert_eq!(w.reason, "fork");
    assert_eq!(w.environments, ["prod"]);
    assert!(w.org_wide);
    assert_eq!(w.keys, ["AWS_KEY", "DB_PASSWORD", "NPM_TOKEN"]);
    // An environment that allows untrusted events serves them (org-wide secrets stay withheld).
    cat.environments[1].allow_untrusted = true;
    let plan = resolve(&names(&["prod", "staging"]), &fork, &cat).unwrap();
    let got = winners(&plan, &cat);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["AWS_KEY", "SLACK"],
        "only staging's"
    );
    let w = plan.withheld.unwrap();
    assert_eq!(w.environments, ["prod"]);
    // A job of an untrusted event that names no environment in an org without org-wide
    // secrets has nothing withheld.
    let bare = Catalogue::default();
    assert_eq!(resolve(&[], &fork, &bare).unwrap().withheld, None);
    // Missing environments still fail an untrusted job (it asked for something that is not there).
    assert!(resolve(&names(&["nope"]), &fork, &cat).is_err());
}

#[test]
fn declared_names_job_env_and_trust_from_stored_values() {
    let list = json!([{"value": "prod", "dynamic": false}, {"value": "", "dynamic": true},
        {"value": {"_type": "inline", "expression": "x"}, "dynamic": true}, "staging",
        {"value": "prod", "dynamic": false}, 7]);
    assert_eq!(declared_environments(Some(&list)), ["prod", "staging"]);
    assert!(declared_environments(None).is_empty());
    assert!(declared_environments(Some(&json!({"value": "x"}))).is_empty());
    let env = json!({"LOG": "debug", "N": 3});
    assert_eq!(
        job_env(Some(&env)),
        BTreeMap::from([("LOG".into(), "debug".into())])
    );
    assert!(job_env(Some(&json!(["A"]))).is_empty());
    assert_eq!(
        trust_of(&json!({"type": "push", "isForkPR": false})),
        Trust::Trusted
    );
    let fork = trust_of(&json!({"isForkPR": true, "payload": {"pull_request": {
        "head": {"repo": {"full_name": "eve/app"}}, "base": {"repo": {"full_name": "acme/app"}}}}}));
    assert_eq!(
        fork,
        Trust::Untrusted("the job runs code from a pull request of the fork eve/app".into())
    );
    let gone = trust_of(&json!({"isForkPR": false, "payload": {"pull_request": {
        "head": {"repo": null}, "base": {"repo": {"full_name": "acme/app"}}}}}));
    assert!(
        matches!(gone, Trust::Untrusted(ref w) if w.contains("deleted fork")),
        "{gone:?}"
    );
    let no_base = trust_of(&json!({"payload": {"pull_request": {
        "head": {"repo": {"full_name": "acme/app"}}, "base": {}}}}));
    assert!(
        matches!(no_base, Trust::Untrusted(ref w) if w.contains("no base")),
        "{no_base:?}"
    );
    let same = trust_of(&json!({"isForkPR": false, "payload": {"pull_request": {
        "head": {"repo": {"full_name": "acme/app"}}, "base": {"repo": {"full_name": "acme/app"}}}}}));
    assert_eq!(same, Trust::Trusted);
}

#[test]
fn per_host_bindings_resolve_nothing() {
    let mut e = env("prod", &[]);
    e.bindings = vec![
        Binding {
            scope_pattern: "aws/prod".into(),
            host_pattern: "build-*".into(),
        },
        Binding {
            scope_pattern: "hosts/${host}".into(),
            host_pattern: "**".into(),
        },
    ];
    let cat = Catalogue {
        org: "acme".into(),
        environments: vec![e],
        secrets: vec![secret("aws/prod", "K"), secret("hosts/${host}", "H")],
    };
    assert!(resolve(&names(&["prod"]), &Trust::Trusted, &cat)
        .unwrap()
        .secrets
        .is_empty());
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn scope() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(ORG_WIDE_SCOPE.to_owned()),
            "[ab]{1,2}(/[ab]{1,2}){0,2}",
            "[ab*]{1,3}(/[ab*]{1,3}){0,1}",
        ]
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        /// Never panics on any snapshot; every delivered key comes from the last layer that
        /// has it, and inside a layer no deeper matching scope was passed over.
        #[test]
        fn precedence_holds(
            secrets in proptest::collection::vec((scope(), "[KL]"), 0..12),
            envs in proptest::collection::vec((proptest::collection::vec(scope(), 0..3), any::<bool>(), any::<bool>()), 0..4),
            declared in proptest::collection::vec(0usize..5, 0..4),
            untrusted in any::<bool>(),
        ) {
            let cat = Catalogue {
        org: "acme".into(),
                environments: envs.iter().enumerate().map(|(i, (scopes, glob, allow))| {
                    let mut e = env(&format!("e{i}"), &scopes.iter().map(String::as_str).collect::<Vec<_>>());
                    if *glob { e.glob = Some(format!("e{i}*")); }
                    e.allow_untrusted = *allow;
                    e
                }).collect(),
                secrets: secrets.iter().map(|(s, k)| secret(s, k)).collect(),
            };
            let declared: Vec<String> = declared.iter().map(|i| format!("e{i}")).collect();
            let trust = if untrusted { Trust::Untrusted("u".into()) } else { Trust::Trusted };
            let Ok(plan) = resolve(&declared, &trust, &cat) else { return Ok(()); };
            for (key, &i) in &plan.secrets {
                let last = plan.layers.iter().rev().find(|l| l.secrets.contains_key(key)).unwrap();
                prop_assert_eq!(last.secrets[key], i);
                if untrusted {
                    prop_assert_ne!(&last.context, ORG_WIDE_CONTEXT);
                }
            }
            for layer in &plan.layers {
                for (key, &i) in &layer.secrets {
                    let won = &cat.secrets[i];
                    prop_assert_eq!(&won.key, key);
                    if layer.context != ORG_WIDE_CONTEXT {
                        prop_assert!(won.scope != ORG_WIDE_SCOPE);
                        let rec = find(&cat, &layer.context).unwrap();
                        let rivals = environment_secrets(rec, &cat.secrets);
                        prop_assert_eq!(rivals[key], i);
                        for s in cat.secrets.iter().filter(|s| &s.key == key && s.scope != ORG_WIDE_SCOPE) {
                            let matches = rec.bindings.iter().any(|b| b.scope_pattern == s.scope
                                || Glob::new(&b.scope_pattern).is_ok_and(|g| g.is_match(&s.scope)));
                            if matches {
                                prop_assert!(depth(&s.scope) <= depth(&won.scope));
                            }
                        }
                    } else {
                        prop_assert_eq!(&won.scope, ORG_WIDE_SCOPE);
                    }
                }
            }
        }
    }
}
