//! Running the real tools (gcloud, kubectl, istioctl, kind) for the real-cluster backends:
//! argument vectors, never a shell; a per-run kubeconfig; nothing of the environment printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;

/// One command: a program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Cmd {
    /// A command from a program and arguments.
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_string(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The command as a shell line, for reports and plans only (it is never run through a shell).
    pub fn line(&self) -> String {
        let quote = |a: &str| {
            if a.is_empty() || a.chars().any(|c| " '\"$*?{}[]()<>|&;`\\".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.to_string()
            }
        };
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(quote)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a command did.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Ran {
    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Errors running a command.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started.
    #[error("starting {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs commands.
#[async_trait]
pub trait Exec: Send + Sync {
    /// Runs one command to completion.
    async fn run(&self, cmd: &Cmd) -> Result<Ran, ExecError>;
}

/// Runs commands as child processes with a fixed extra environment (e.g. `KUBECONFIG`).
pub struct Process {
    /// Variables set for every command.
    pub env: BTreeMap<String, PathBuf>,
}

#[async_trait]
impl Exec for Process {
    async fn run(&self, cmd: &Cmd) -> Result<Ran, ExecError> {
        tracing::info!(command = %cmd.line(), "running");
        // Its own process group: the terminal's Ctrl-C goes to the harness's group only, so a
        // gcloud call (a cluster creation) is not killed mid-call, even when the step is
        // abandoned; the GKE teardown then waits for the cloud operations still running. Local
        // tools (kind, kubectl) are killed with an abandoned step, so that none outlives teardown.
        let out = tokio::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(&self.env)
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(cmd.program != "gcloud")
            .output()
            .await
            .map_err(|source| ExecError::Spawn {
                program: cmd.program.clone(),
                source,
            })?;
        Ok(Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|ps| {
        std::env::split_paths(&ps)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 8, item 16: a tool runs in a process group of its own, so the terminal's SIGINT
    /// (sent to the foreground group) does not reach it.
    #[tokio::test]
    async fn tools_run_in_their_own_process_group() {
        let p = Process {
            env: BTreeMap::new(),
        };
        // Field 5 of /proc/PID/stat is the process group.
        let ran = p
            .run(&Cmd::new("sh", ["-c", "cut -d' ' -f5 /proc/$$/stat"]))
            .await
            .unwrap();
        let child_group: i32 = ran.stdout.trim().parse().unwrap();
        // SAFETY: getpgrp has no preconditions and cannot fail.
        let ours = unsafe { libc::getpgrp() };
        assert_ne!(child_group, ours);
    }

    #[test]
    fn lines_quote_what_a_shell_would_split() {
        let c = Cmd::new(
            "gcloud",
            [
                "dns",
                "record-sets",
                "update",
                "example.com.",
                "--rrdatas=1.2.3.4",
                "a b",
            ],
        );
        assert_eq!(
            c.line(),
            "gcloud dns record-sets update example.com. --rrdatas=1.2.3.4 'a b'"
        );
    }
}
