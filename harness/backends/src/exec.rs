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

/// The long-running child processes of one run (Envoys), so that teardown can make sure every
/// one has exited, including those whose handle was dropped unwaited: a step aborted by Ctrl-C
/// while it started one (`kill_on_drop` sends SIGKILL, but nobody waits for the exit).
///
/// Each is remembered with its start time, so a pid the kernel has given to another process
/// since is never signalled. Linux only (it reads `/proc`); elsewhere nothing is tracked.
#[derive(Debug, Default)]
pub struct Children {
    live: std::sync::Mutex<BTreeMap<u32, u64>>,
}

/// A process's state letter and start time (clock ticks after boot), from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 is the state, field 22 the start time; `rest` begins at field 3.
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

impl Children {
    /// Remembers a child just started.
    pub fn track(&self, pid: u32) {
        if let Some((_, started)) = proc_stat(pid) {
            self.live
                .lock()
                .expect("children lock is never poisoned")
                .insert(pid, started);
        }
    }

    fn running(pid: u32, started: u64) -> bool {
        // A zombie (Z) or dead (X) process has exited: it holds no socket or file any more.
        proc_stat(pid).is_some_and(|(state, t)| t == started && state != 'Z' && state != 'X')
    }

    /// Kills (SIGKILL) every remembered child that still runs and waits, up to `timeout`, until
    /// each has exited. The ones it had to end (`NAME pid N`), and those still running after
    /// the timeout, for the teardown report.
    pub async fn end_all(&self, timeout: std::time::Duration) -> (Vec<String>, Vec<String>) {
        let all = std::mem::take(&mut *self.live.lock().expect("children lock is never poisoned"));
        let mut ended = Vec::new();
        let running: Vec<(u32, u64)> = all
            .into_iter()
            .filter(|(pid, t)| Self::running(*pid, *t))
            .collect();
        for (pid, _) in &running {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            // SAFETY: kill(2) on a pid verified above to be this run's child (same start time).
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
            ended.push(format!("{} pid {pid}", name.trim()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left: Vec<String> = running
                .iter()
                .filter(|(pid, t)| Self::running(*pid, *t))
                .map(|(pid, _)| format!("pid {pid}"))
                .collect();
            if left.is_empty() || tokio::time::Instant::now() >= deadline {
                return (ended, left);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: a child whose handle was dropped without waiting (as when Ctrl-C aborts the
    /// step starting it) is still ended and waited for at teardown; one that exited is left
    /// alone.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn teardown_ends_and_waits_for_children_whose_handles_were_dropped() {
        let children = Children::default();
        let dropped = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = dropped.id();
        children.track(pid);
        drop(dropped);
        let mut done = std::process::Command::new("true").spawn().unwrap();
        children.track(done.id());
        done.wait().unwrap();
        assert!(proc_stat(pid).is_some_and(|(s, _)| s != 'Z'), "sleep runs");
        let (ended, left) = children.end_all(std::time::Duration::from_secs(5)).await;
        assert_eq!(ended, vec![format!("sleep pid {pid}")]);
        assert!(left.is_empty(), "{left:?}");
        assert!(
            proc_stat(pid).is_none_or(|(s, _)| s == 'Z'),
            "sleep has exited when end_all returns"
        );
    }

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
