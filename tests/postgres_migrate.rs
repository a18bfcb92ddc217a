//! `mfactl init` migrates an older PostgreSQL store in place: a store of schema version 1 (the
//! group index with its foreign key) is refused by every other command until `init` brings it to
//! the current version, keeping every row. Prints `skipped` without a server.

mod common;
use common::*;

const ADD_V1_KEY: &str = "ALTER TABLE mfactl.members ADD CONSTRAINT members_group_key_fkey \
     FOREIGN KEY (group_key) REFERENCES mfactl.groups (key);
     UPDATE mfactl.meta SET value = 1 WHERE key = 'schema_version'";

fn foreign_keys(db: &pg::Db) -> i64 {
    let mut c = db.connect(&db.url()).expect("connect");
    c.query_one(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'mfactl.members'::regclass \
         AND contype = 'f'",
        &[],
    )
    .expect("query")
    .get(0)
}

#[test]
fn init_migrates_a_version_1_store_and_keeps_its_rows() {
    let Some(db) = pg::database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = Env {
        dir,
        store: db.url().into(),
    };
    env.ok(&["init"]);
    env.ok(&["store", "import", &format!("{EXAMPLES}/directory.yaml")]);
    assert_eq!(
        foreign_keys(&db),
        0,
        "the current schema has no foreign key on members"
    );
    let before = env.export();
    let audit_before = env.ok(&["audit", "--format", "json"]).stdout;
    let mut c = db.connect(&db.url()).expect("connect");
    c.batch_execute(ADD_V1_KEY)
        .expect("make the store version 1");
    assert_eq!(foreign_keys(&db), 1);

    let o = env.run(&["show", "bob@contoso.example"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("mfactl init"), "{}", o.all());

    let o = env.ok(&["init"]);
    assert!(
        o.all().contains("from schema version 1 to 2"),
        "{}",
        o.all()
    );
    assert_eq!(foreign_keys(&db), 0);
    assert_eq!(env.export(), before);
    assert_eq!(env.ok(&["audit", "--format", "json"]).stdout, audit_before);
    let o = env.ok(&["init"]);
    assert!(o.all().contains("is up to date"), "{}", o.all());
}
