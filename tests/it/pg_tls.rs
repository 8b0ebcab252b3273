//! TLS to PostgreSQL through rustls, against a real server with a private CA: the connector
//! honours sslmode and sslrootcert from KICI_DATABASE_URL (which the `postgres` crate alone
//! rejects) and verifies the chain and host name.

use crate::support;

use std::path::Path;

use kici_orchestrator::db::Connector;
use support::{fake_github::openssl, pg::PgCluster};

/// A CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA.
/// The test CA with a server certificate for localhost (tests/support/tls.rs), and a second,
/// unrelated CA for the wrong-CA case.
fn make_pki(dir: &Path) {
    support::tls::TestPki::create(dir);
    let ca = [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256",
    ];
    let other = [
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
        "-subj",
        "/CN=other CA",
    ];
    openssl(dir, &[&ca[..], &other[..]].concat());
}

fn ssl_in_use(url: &str) -> Result<bool, String> {
    let mut c = Connector::from_url(url)
        .map_err(|e| e.to_string())?
        .connect()
        .map_err(|e| e.to_string())?;
    let row = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[test]
fn sslmode_and_sslrootcert_are_honoured() {
    kici_orchestrator::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("kici-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_pki(&dir);
    let pg = PgCluster::start();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    pg.enable_tls(&read("server.crt"), &read("server.key"));
    let base = format!("postgresql://postgres@127.0.0.1:{}/postgres", pg.port());
    let ca = dir.join("ca.pem");
    let other = dir.join("other.pem");

    assert_eq!(
        ssl_in_use(&format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            ca.display()
        )),
        Ok(true)
    );
    assert_eq!(
        ssl_in_use(&format!(
            "{base}?sslmode=verify-ca&sslrootcert={}",
            ca.display()
        )),
        Ok(true)
    );
    let kv = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert='{}'",
        pg.port(),
        ca.display()
    );
    assert_eq!(ssl_in_use(&kv), Ok(true));
    // No TLS unless asked for.
    assert_eq!(ssl_in_use(&base), Ok(false));
    assert_eq!(ssl_in_use(&format!("{base}?sslmode=disable")), Ok(false));

    // A server certificate from an untrusted CA is refused, also with plain `require`.
    let err = ssl_in_use(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        other.display()
    ))
    .unwrap_err();
    assert!(
        err.contains("cannot connect to PostgreSQL") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    let err = ssl_in_use(&format!("{base}?sslmode=require")).unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The host name is checked too: same address, but a name the certificate does not carry.
    let named = |host: &str| {
        format!("host={host} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}", pg.port(), ca.display())
    };
    assert_eq!(ssl_in_use(&named("localhost")), Ok(true));
    let err = ssl_in_use(&named("kici.invalid")).unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
