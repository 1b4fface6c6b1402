//! The `meshmig` command line: [`args`] (the words and flags), [`dispatch`] (what each command
//! does), and the commands with rooms of their own ([`split`], [`demo`], [`tools`]). The
//! backends are looked up in `meshmig::backend::registry`.

mod args;
mod demo;
mod dispatch;
mod split;
mod tools;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use meshmig::backend::registry;
use meshmig::exit;
use meshmig::runner::BackendOptions;

/// Parses the command line, prepares the process for a run's backend while it has one thread,
/// and runs the command.
pub fn main() -> ExitCode {
    // `meshmig plan … | head` should end quietly, as other command-line tools do, not panic.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHMIG_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cli = Cli::parse();
    let prepared = match prepare(&mut cli.command) {
        Ok(p) => p,
        Err(code) => return ExitCode::from(code as u8),
    };
    // `split` drives every request from one task: one thread avoids cross-thread wake-ups.
    let mut builder = if matches!(cli.command, Command::Split { .. }) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshmig: starting the async runtime: {e}");
            return ExitCode::from(exit::INFRASTRUCTURE as u8);
        }
    };
    let code = match rt.block_on(dispatch::dispatch(cli.command, prepared)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshmig: {e:#}");
            exit::INFRASTRUCTURE
        }
    };
    ExitCode::from(code as u8)
}

/// For `run`: what the run needs is checked now, before step A1, and the backend prepares the
/// process while it has one thread (a user namespace requires it): the options it gets, or the
/// exit code. `--backend gke --rehearsal` is the `gke-rehearsal` backend.
fn prepare(command: &mut Command) -> Result<BackendOptions, i32> {
    let Command::Run { backend, cloud, .. } = command else {
        return Ok(BackendOptions::default());
    };
    if cloud.rehearsal {
        if backend != "gke" {
            eprintln!("meshmig: --rehearsal rehearses the gke backend: add --backend gke");
            return Err(exit::INVALID_INPUT);
        }
        *backend = "gke-rehearsal".into();
    }
    let entry = registry::find(backend).map_err(|e| {
        eprintln!("meshmig: {e}");
        exit::INVALID_INPUT
    })?;
    let mut opts = cloud.options();
    match entry.preflight(&mut opts) {
        Ok(Some(note)) => println!("note: {note}"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("meshmig: {e}");
            return Err(exit::INFRASTRUCTURE);
        }
    }
    Ok(opts)
}
