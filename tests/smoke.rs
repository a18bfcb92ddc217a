mod common;
use common::*;

#[test]
fn demo_runs_in_a_fresh_directory_and_ends_with_an_empty_plan() {
    let env = Env::bare();
    let o = env.ok(&["demo"]);
    assert!(o.stdout.contains("denied"), "{}", o.stdout);
    assert!(
        o.stdout.contains("(exit code 3: nothing was applied)"),
        "{}",
        o.stdout
    );
    let last = o.stdout.rsplit("== 4.").next().unwrap();
    assert!(
        last.contains("Plan: 0 changes for 0 users, 0 denied."),
        "{last}"
    );
    assert!(env.exists("demo.db"));
    // Running it again starts from scratch.
    let again = env.ok(&["demo"]);
    assert!(
        again
            .stdout
            .contains("Plan: 15 changes for 6 users, 4 denied."),
        "{}",
        again.stdout
    );
}
