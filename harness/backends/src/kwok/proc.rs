//! Child processes of a run on real control planes: each with its log file, stopped explicitly
//! (SIGTERM, then SIGKILL after a grace period) and waited for, so none outlives the run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Errors of a child process.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// It could not be started.
    #[error("starting {name} ({program})")]
    Spawn {
        /// Its role.
        name: String,
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited while it should run.
    #[error("{name} exited ({status}); the end of its log {log}:\n{tail}")]
    Exited {
        /// Its role.
        name: String,
        /// How it ended.
        status: String,
        /// Its log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
}

/// A running child.
pub struct Proc {
    /// Its role (`etcd`, `kube-apiserver`, …).
    pub name: String,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    child: Child,
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Proc {
    /// Starts `program ARGS` with `env`, its output to `LOG_DIR/NAME.log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
        log_dir: &Path,
    ) -> Result<Self, ProcError> {
        let log = log_dir.join(format!("{name}.log"));
        let spawn_err = |source| ProcError::Spawn {
            name: name.into(),
            program: program.to_path_buf(),
            source,
        };
        let out = std::fs::File::create(&log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        // Its own process group: a terminal's Ctrl-C reaches meshmig, which stops it in order.
        cmd.process_group(0);
        let child = cmd.spawn().map_err(spawn_err)?;
        Ok(Self {
            name: name.into(),
            log,
            child,
        })
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its resident memory now and at its peak (VmRSS, VmHWM), in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// An error if it has exited.
    pub fn check_alive(&mut self) -> Result<(), ProcError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(ProcError::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: tail(&self.log, 20),
            }),
            Err(e) => Err(ProcError::Exited {
                name: self.name.clone(),
                status: e.to_string(),
                log: self.log.clone(),
                tail: tail(&self.log, 20),
            }),
        }
    }

    /// Kills the process at once (SIGKILL), as a fault would; [`Proc::stop`] still reaps it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.start_kill()
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`; waits for it either way.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}
