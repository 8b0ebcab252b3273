//! Integration test of the real-PostgreSQL test harness (tests/support/pg.rs).

use crate::support;

use support::pg::PgCluster;

#[test]
fn private_cluster_databases_are_isolated_and_survive_a_restart() {
    let pg = PgCluster::start();
    assert!(pg.port() > 0);
    assert!(pg.url("x").starts_with("postgresql://postgres@127.0.0.1:"));

    let a = pg.create_database();
    let b = pg.create_database();
    assert_ne!(a, b);

    pg.psql(
        &a,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, NULL);",
    );
    assert_eq!(pg.psql(&a, "SELECT id, v FROM t ORDER BY id"), "1|one\n2|");
    // The other database does not see the table.
    assert_eq!(
        pg.psql(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        "0"
    );
    assert_eq!(
        pg.psql(&b, "SELECT current_database()"),
        b.rsplit('/').next().unwrap()
    );
    assert_eq!(pg.psql(&a, "SHOW fsync"), "off");

    pg.stop();
    let err = postgres::Client::connect(&a, postgres::NoTls)
        .err()
        .expect("connecting to a stopped server must fail");
    eprintln!("connect to stopped server failed as expected: {err}");

    pg.start_again();
    assert_eq!(pg.psql(&a, "SELECT v FROM t WHERE id = 1"), "one");
    // And the client API the product uses works against it too.
    let mut client = postgres::Client::connect(&a, postgres::NoTls).unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[test]
fn shared_cluster_from_two_threads() {
    let handles: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let pg = PgCluster::shared();
                let db = pg.create_database();
                pg.psql(
                    &db,
                    &format!("CREATE TABLE t (n int); INSERT INTO t VALUES ({i});"),
                );
                assert_eq!(pg.psql(&db, "SELECT n FROM t"), i.to_string());
                (pg.port(), db)
            })
        })
        .collect();
    let results: Vec<(u16, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results[0].0, results[1].0,
        "one shared cluster per test binary"
    );
    assert_ne!(
        results[0].1, results[1].1,
        "each test gets its own database"
    );
    assert!(std::ptr::eq(PgCluster::shared(), PgCluster::shared()));
}

#[test]
fn create_database_is_safe_concurrently() {
    let pg = PgCluster::shared();
    let handles: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || pg.create_database()))
        .collect();
    let mut urls: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for url in &urls {
        assert_eq!(pg.psql(url, "SELECT 1"), "1");
    }
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 8);
}
