//! The bad-input corpus: one trial per file in `tests/bad-input/` (a libtest-mimic binary, like the
//! conformance suite). Each file is a malformed scenario, or a scenario applying a malformed
//! manifest from `tests/bad-input/manifests/`. Loading it must fail before anything starts,
//! without a panic, as invalid input (exit code 2), with the file and a line:column in the
//! message, and with the words its first line names (`# expect: WORDS`).

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input")
}

fn trial(path: &Path) -> Result<(), Failed> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let expect = String::from_utf8_lossy(first)
        .strip_prefix("# expect:")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let manifests = corpus().join("manifests");
    let loaded = std::panic::catch_unwind(|| meshmig::runner::load(path, Some(&manifests)));
    let err = match loaded {
        Err(_) => return Err("loading it panicked".into()),
        Ok(Ok(_)) => return Err("it loaded: the bad input was accepted".into()),
        Ok(Err(e)) => meshmig::runner::RunnerError::from(e),
    };
    let code = err.exit_code();
    let message = meshmig::error_chain(&err);
    if code != meshmig::exit::INVALID_INPUT {
        return Err(format!("exit code {code}, not 2: {message}").into());
    }
    // The location: a file of the corpus, then :LINE:COLUMN.
    let located = message.split_whitespace().any(|w| {
        let w = w.trim_end_matches(':');
        let mut parts = w.rsplitn(3, ':');
        let (col, line, file) = (parts.next(), parts.next(), parts.next());
        file.is_some_and(|f| f.contains("bad-input/"))
            && line.is_some_and(|l| l.parse::<usize>().is_ok_and(|n| n > 0))
            && col.is_some_and(|c| c.parse::<usize>().is_ok_and(|n| n > 0))
    });
    if !located {
        return Err(format!("no FILE:LINE:COLUMN in: {message}").into());
    }
    if !message.contains(&expect) {
        return Err(format!("{expect:?} is not in: {message}").into());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/bad-input")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let trials = files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            Trial::test(name, move || trial(&p))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
