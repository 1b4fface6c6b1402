//! Test support for meshmig's tests (a dev-dependency only, so it is not part of meshmig's
//! public API): where the tests find the real upstream files and the footer samples.

use std::path::PathBuf;

fn base() -> PathBuf {
    std::env::var_os("MESHMIG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// `../shared/SUB` beside the project (or `$MESHMIG_SHARED/SUB`); the calling test fails when
/// it is missing. The GitHub workflow fetches the upstream manifests at their pinned commits
/// and points `MESHMIG_SHARED` at them.
pub fn shared(sub: &str) -> PathBuf {
    let p = base().join(sub);
    assert!(
        p.exists(),
        "{} is missing: tests read the real upstream files there (set MESHMIG_SHARED to a folder laid out like ../shared)",
        p.display()
    );
    p
}

/// The footer samples: the real ones in `../shared/footers` when they are there, else the
/// project's own pages of the same variants in `fixtures/footers` (the GitHub workflow has
/// no `../shared`; the upstream repositories hold no rendered pages).
pub fn footers() -> PathBuf {
    let p = base().join("footers");
    if p.exists() {
        p
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/footers")
    }
}

/// Runs `body` in a process of its own: the test binary runs itself again for `test` alone
/// (`TEST --exact`, where `test` is the name libtest lists, `module::function`). A test that
/// changes the process's environment needs this: `cargo test` runs every test of the one
/// integration binary as a thread of one process, so a variable it set would reach the tests
/// beside it (and the commands they start). Fails when the run fails, and when no test called
/// `test` ran (libtest passes `--exact` with 0 tests).
pub fn in_own_process(test: &str, body: impl FnOnce()) {
    const RAN: &str = "MESHMIG_TEST_IN_OWN_PROCESS";
    if let Some(ran) = std::env::var_os(RAN) {
        body();
        std::fs::write(ran, test).expect("recording that the test's body ran in its own process");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let ran = std::env::temp_dir().join(format!(
        "meshmig-own-process-{}-{}",
        std::process::id(),
        test.replace("::", "-")
    ));
    let _ = std::fs::remove_file(&ran);
    // The run's output is captured and shown as this test's own (libtest prints it when this
    // test fails): left on the terminal, a run that fails on purpose (the test below that proves
    // a failure is seen) printed "test result: FAILED" in a passing suite.
    let out = std::process::Command::new(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(RAN, &ran)
        .output()
        .expect("running the test binary again for one test");
    let recorded = std::fs::read_to_string(&ran).unwrap_or_default();
    let _ = std::fs::remove_file(&ran);
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{output}");
    assert!(
        out.status.success(),
        "{test} in its own process failed: {}\n{output}",
        out.status
    );
    assert!(
        recorded == test,
        "{test} did not run in its own process: `{} {test} --exact` ran no test of that name",
        exe.display()
    );
}

#[cfg(test)]
mod tests {
    use super::in_own_process;

    #[test]
    fn the_body_runs_in_a_process_of_its_own() {
        in_own_process("tests::the_body_runs_in_a_process_of_its_own", || {
            assert!(
                std::env::var_os("MESHMIG_TEST_IN_OWN_PROCESS").is_some(),
                "the body ran in the calling process"
            );
        });
    }

    #[test]
    #[should_panic(expected = "did not run in its own process")]
    fn a_misnamed_test_fails() {
        in_own_process("no_test_is_called_this", || {});
    }

    #[test]
    #[should_panic(expected = "in its own process failed")]
    fn a_failing_body_fails_the_test() {
        in_own_process("tests::a_failing_body_fails_the_test", || {
            panic!("the body failed")
        });
    }
}
