//! What each subcommand does, given its parsed flags: one function per command, each returning
//! the exit code. The backends are looked up in the registry, never branched on.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::args::{CloudArgs, Command, SplitArgs, ToolsCommand};
use super::split::{split, Who};
use meshmig::backend::entry::{BackendEntry, EntryError};
use meshmig::backend::registry;
use meshmig::engine::RunOptions;
use meshmig::runner::{self, BackendOptions};
use meshmig::{exit, footer, report, scenario};

/// Runs a command; its exit code.
pub async fn dispatch(cmd: Command, prepared: BackendOptions) -> anyhow::Result<i32> {
    match cmd {
        Command::Run {
            scenario,
            backend,
            manifests,
            report_dir,
            keep,
            split,
            ..
        } => {
            let b = registry::find(&backend).map_err(anyhow::Error::msg)?;
            let what = RunArgs {
                scenario: &scenario,
                manifests: manifests.as_deref(),
                report_dir: report_dir.as_deref(),
                keep,
                split,
            };
            run(b, what, &prepared).await
        }
        Command::Plan {
            scenario,
            backend,
            manifests,
            cloud,
        } => plan(&scenario, &backend, manifests.as_deref(), &cloud),
        Command::List { dir } => list(&dir),
        Command::Split {
            url,
            expect,
            host,
            resolve,
            pod,
            identify,
            name,
            json,
            split: args,
        } => {
            let who = Who {
                identify,
                pods: pod,
                names: name,
            };
            split(url, &expect, host, resolve, who, args, json).await
        }
        Command::Demo {
            split,
            abort_percent,
            listen,
        } => super::demo::demo(&split, abort_percent, listen).await,
        Command::Footer { file } => read_footer(&file),
        Command::MetadataServer {
            cluster_name,
            zone,
            listen,
        } => {
            meshmig::backend::kind::metadata_server(listen, cluster_name, zone)
                .await
                .context("serving GCE metadata")?;
            Ok(exit::PASS)
        }
        Command::Boutique { service } => {
            meshmig::backend::boutique::serve(&service)
                .await
                .context("standing in for an Online Boutique service")?;
            Ok(exit::PASS)
        }
        Command::Tools { command } => Ok(match command {
            ToolsCommand::Install {
                versions,
                only,
                force,
            } => super::tools::tools_install(&versions.tools(), &only, force),
            ToolsCommand::List { versions } => {
                meshmig::backend::kwok::entry::doctor(&versions.tools())
            }
        }),
        Command::Doctor {
            backend,
            project,
            kind_kit,
        } => {
            let b = registry::find(&backend).map_err(anyhow::Error::msg)?;
            let opts = BackendOptions {
                project,
                kind_kit,
                ..BackendOptions::default()
            };
            Ok(b.doctor(&opts).await)
        }
        Command::Gc {
            older_than,
            project,
            backend,
            kind_kit,
        } => gc(&backend, older_than, project, kind_kit).await,
    }
}

/// What `meshmig run` was asked.
struct RunArgs<'a> {
    scenario: &'a Path,
    manifests: Option<&'a Path>,
    report_dir: Option<&'a Path>,
    keep: bool,
    split: SplitArgs,
}

/// `meshmig run`: the scenario on the backend, its report written, kept clusters held.
async fn run(
    backend: &'static dyn BackendEntry,
    what: RunArgs<'_>,
    backend_opts: &BackendOptions,
) -> anyhow::Result<i32> {
    let opts = RunOptions {
        keep: what.keep,
        params: what.split.params(),
        pace: what.split.pace(),
        progress: true,
    };
    let r = match runner::run_file(
        what.scenario,
        what.manifests,
        backend,
        backend_opts,
        opts,
        std::sync::Arc::new(report::Printer::new(true)),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meshmig: {}", meshmig::error_chain(&e));
            return Ok(e.exit_code());
        }
    };
    if let Some(dir) = what.report_dir {
        for p in report::write_all(&r, dir)? {
            println!("report: {}", p.display());
        }
    }
    if what.keep && backend.capabilities().keep_in_process {
        // The clusters live in this process: hold them up for inspection.
        println!(
            "--keep: the {} clusters live in this process (pid {}) and stay up until Ctrl-C",
            backend.name(),
            std::process::id()
        );
        meshmig::shutdown_signal().await;
        for s in backend.release_kept().await {
            println!("stopped {s}");
        }
    }
    Ok(r.outcome.exit_code())
}

/// `meshmig plan`: the scenario's commands on a backend; nothing is executed.
fn plan(
    scenario: &Path,
    backend: &str,
    manifests: Option<&Path>,
    cloud: &CloudArgs,
) -> anyhow::Result<i32> {
    let b = registry::find(backend).map_err(anyhow::Error::msg)?;
    let mut s = match runner::load(scenario, manifests) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meshmig: {}", meshmig::error_chain(&e));
            return Ok(exit::INVALID_INPUT);
        }
    };
    if let Some(d) = &cloud.domain {
        s.dns.domain = d.clone();
    }
    match b.plan(&s, &cloud.options()) {
        Ok(text) => {
            print!("{text}");
            Ok(exit::PASS)
        }
        Err(e) => {
            eprintln!("meshmig: {e}");
            Ok(exit::INVALID_INPUT)
        }
    }
}

/// `meshmig list`: the scenarios of a folder and their steps.
fn list(dir: &Path) -> anyhow::Result<i32> {
    let files = scenario::discover(dir)
        .with_context(|| format!("listing scenarios in {}", dir.display()))?;
    let mut code = exit::PASS;
    for f in files {
        match runner::load(&f, None) {
            Ok(s) => {
                println!("{} ({}): {}", s.name, f.display(), s.description.trim());
                for step in &s.steps {
                    println!("  {} {}", step.id, step.title);
                }
            }
            Err(e) => {
                println!("{}: INVALID: {}", f.display(), meshmig::error_chain(&e));
                code = exit::INVALID_INPUT;
            }
        }
    }
    Ok(code)
}

/// `meshmig footer`: what a page's footer says, as JSON.
fn read_footer(file: &str) -> anyhow::Result<i32> {
    let page = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the page from stdin")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    match footer::parse(&page) {
        Ok(f) => {
            println!("{}", serde_json::to_string_pretty(&f)?);
            Ok(exit::PASS)
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"state": "none", "error": e.to_string()})
            );
            Ok(exit::ASSERTION_FAILED)
        }
    }
}

/// `meshmig gc`: what crashed runs of a backend left, deleted.
async fn gc(
    backend: &str,
    older_than: Duration,
    project: Option<String>,
    kind_kit: Option<std::path::PathBuf>,
) -> anyhow::Result<i32> {
    let b = registry::find(backend).map_err(anyhow::Error::msg)?;
    let opts = BackendOptions {
        project,
        kind_kit,
        ..BackendOptions::default()
    };
    match b.gc(older_than, &opts).await {
        Ok(report) => {
            for line in report.lines {
                println!("{line}");
            }
            Ok(report.code)
        }
        Err(EntryError::Input { what }) => {
            eprintln!("meshmig: {what}");
            Ok(exit::INVALID_INPUT)
        }
        Err(EntryError::Backend(e)) => Err(e.into()),
    }
}
