//! A migration's checksum: the SHA-256 of its statements, not of its file. Comments (`--` to the
//! end of the line, `/* … */`) and the amount of whitespace between tokens are left out, so a
//! comment can be corrected in `migrations/*.sql` without every existing database refusing the
//! file as "changed after it was applied". String literals, quoted identifiers and dollar-quoted
//! bodies (function sources) are kept byte for byte: a change there is a change of the schema.
//!
//! Databases migrated before this rule recorded the SHA-256 of the raw file text; `LEGACY` keeps
//! those checksums of 0001–0005 so such databases stay consistent.

/// The checksum recorded in `schema_migrations` for a migration's SQL.
pub fn checksum(sql: &str) -> String {
    crate::crypto::sha256_hex(normalise(sql).as_bytes())
}

/// Whether `recorded` (from `schema_migrations`) matches migration `name` with text `sql`: the
/// current checksum, or the raw-text checksum that builds before the normalisation recorded.
pub fn matches(name: &str, sql: &str, recorded: &str) -> bool {
    recorded == checksum(sql) || LEGACY.iter().any(|(n, sum)| *n == name && *sum == recorded)
}

/// SHA-256 of the raw file text of each migration as it was applied by earlier builds.
pub const LEGACY: &[(&str, &str)] = &[
    (
        "0001_initial",
        "bcbdb349230a9a6ffd51a6720c1c8e6987daaddaf28b1d10b87c7ca6a3d1880d",
    ),
    (
        "0002_execution",
        "67ef08d1cfb55291140f3a708ba52c5df41b3d82a0025aee4184939c2f081281",
    ),
    (
        "0003_agents",
        "6283a942bf6d50b12f7d361dbd6a7789c3704349ac1f16654c86814eb359f342",
    ),
    (
        "0004_delivery_leases",
        "47f73936bedfc24b84e93c4c0317833fd602135a9a55368a73ddb08b89835ff6",
    ),
    (
        "0005_agent_identity",
        "6ef0f7a931fe3ddb2fc0658d1baf2bcf91a2ddf8d81c259b8b2fc08463dbd150",
    ),
];

/// The statements of `sql` with comments removed and every run of whitespace (comments count as
/// whitespace) outside literals turned into one space, trimmed at both ends.
pub fn normalise(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut pending_space = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            pending_space = true;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(b, i);
            pending_space = true;
            continue;
        }
        if c.is_ascii_whitespace() {
            pending_space = true;
            i += 1;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(b' ');
        }
        pending_space = false;
        let end = match c {
            b'\'' | b'"' => quoted_end(b, i, c),
            b'$' => dollar_end(b, i).unwrap_or(i + 1),
            _ => i + 1,
        };
        out.extend_from_slice(&b[i..end]);
        i = end;
    }
    // Only ASCII bytes were dropped or inserted, at ASCII positions: still UTF-8.
    String::from_utf8(out).expect("normalised SQL stays UTF-8")
}

/// PostgreSQL block comments nest; an unterminated one runs to the end.
fn skip_block_comment(b: &[u8], start: usize) -> usize {
    let (mut depth, mut i) = (0usize, start);
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// The end (exclusive) of a '…' literal or "…" identifier opened at `start`; a doubled quote
/// inside is just two quotes in a row, which this reads as a close and a reopen.
fn quoted_end(b: &[u8], start: usize, q: u8) -> usize {
    match b[start + 1..].iter().position(|&c| c == q) {
        Some(k) => start + 1 + k + 1,
        None => b.len(),
    }
}

/// The end (exclusive) of a dollar-quoted body `$tag$ … $tag$` opened at `start`, or None when
/// the `$` does not open one (a positional parameter like `$1`).
fn dollar_end(b: &[u8], start: usize) -> Option<usize> {
    let tag_len = b[start + 1..]
        .iter()
        .position(|&c| c == b'$')
        .filter(|&n| {
            b[start + 1..start + 1 + n]
                .iter()
                .enumerate()
                .all(|(k, &c)| {
                    c == b'_' || c.is_ascii_alphabetic() || (k > 0 && c.is_ascii_digit())
                })
        })?;
    let tag = &b[start..start + tag_len + 2];
    let body = start + tag.len();
    let close = b[body..].windows(tag.len()).position(|w| w == tag);
    Some(close.map_or(b.len(), |k| body + k + tag.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQL: &str = concat!(
        "-- Runs (a comment).\n",
        "CREATE TABLE runs (\n",
        "    id   uuid PRIMARY KEY, -- the id\n",
        "    name text NOT NULL DEFAULT 'a  -- b'\n",
        ");\n"
    );

    #[test]
    fn comments_and_whitespace_do_not_change_the_checksum() {
        assert_eq!(
            normalise(SQL),
            "CREATE TABLE runs ( id uuid PRIMARY KEY, name text NOT NULL DEFAULT 'a  -- b' );"
        );
        let reworded = concat!(
            "-- Runs: see docs/architecture.md, Database tables.\n-- Two lines now.\n",
            "CREATE TABLE runs (\n  id uuid PRIMARY KEY, /* the id */\n",
            "\tname text NOT NULL DEFAULT 'a  -- b'\n);"
        );
        assert_eq!(checksum(SQL), checksum(reworded));
    }

    #[test]
    fn a_statement_change_changes_the_checksum() {
        for changed in [
            SQL.replace("NOT NULL", "NULL"),
            SQL.replace("'a  -- b'", "'a -- b'"),
            SQL.replace("runs", "run"),
        ] {
            assert_ne!(checksum(SQL), checksum(&changed), "{changed}");
        }
    }

    #[test]
    fn dollar_quoted_bodies_and_quoted_names_are_kept_verbatim() {
        let f = concat!(
            "CREATE FUNCTION f() RETURNS trigger AS $$\n",
            "BEGIN\n  -- kept\n  RETURN NULL;\nEND\n$$ LANGUAGE plpgsql;"
        );
        assert!(normalise(f).contains("$$\nBEGIN\n  -- kept\n  RETURN NULL;\nEND\n$$"));
        let tagged = "SELECT $fn$ a  -- b $fn$, \"x  -- y\", $1  ,  /* c /* nested */ d */ 2";
        assert_eq!(
            normalise(tagged),
            "SELECT $fn$ a  -- b $fn$, \"x  -- y\", $1 , 2"
        );
        assert_eq!(normalise("'it''s  --'  x"), "'it''s  --' x");
    }

    #[test]
    fn legacy_raw_checksums_are_accepted_for_their_migration_only() {
        let (name, sum) = LEGACY[0];
        assert!(matches(name, "CREATE TABLE x ();", sum));
        assert!(!matches("0002_execution", "CREATE TABLE x ();", sum));
        assert!(matches("0009_new", SQL, &checksum(SQL)));
        assert!(!matches("0009_new", SQL, "00"));
        assert_eq!(
            checksum("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
