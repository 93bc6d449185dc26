//! pgBackRest (Debian's package, 2.45) as the peer for catching up with
//! prefetch: its `archive-get` with `archive-async=y` from a
//! posix repository that pgBackRest itself filled with `archive-push`,
//! gzip-compressed like our archive, or from a repository in object
//! storage (examples/bench/pgbrs3.rs). Skipped, with a note,
//! when the `pgbackrest` command is not installed (`apt-get install
//! pgbackrest`).

use super::*;

pub const STANZA: &str = "bench";

/// A repository and its configuration in the sandbox.
pub struct PgBackRest {
    conf: PathBuf,
    root: PathBuf,
}

impl PgBackRest {
    /// `None` when pgBackRest is not installed.
    pub fn set_up(sb: &Sandbox) -> Result<Option<Self>> {
        let repo = format!("repo1-path={}/pgbackrest/repo\n", sb.path().display());
        Self::set_up_with(sb, "pgbackrest", &repo)
    }

    /// A repository in object storage, configured by `repo` (its `repo1-`
    /// lines), with its files in the sandbox's directory `name`.
    pub fn set_up_remote(sb: &Sandbox, name: &str, repo: &str) -> Result<Option<Self>> {
        Self::set_up_with(sb, name, repo)
    }

    fn set_up_with(sb: &Sandbox, name: &str, repo: &str) -> Result<Option<Self>> {
        if Command::new("pgbackrest").arg("version").output().is_err() {
            say(
                "\n_pgBackRest is not installed (`apt-get install pgbackrest`): its row is left out._\n",
            );
            return Ok(None);
        }
        let root = sb.path().join(name);
        sb.mkdir(&root)?;
        for d in ["repo", "log", "lock"] {
            sb.mkdir(&root.join(d))?;
        }
        let conf = root.join("pgbackrest.conf");
        sb.write_file(
            &conf,
            format!(
                "[global]\n{repo}compress-type=gz\nlog-path={r}/log\nlock-path={r}/lock\n\
                 log-level-console=warn\nlog-level-file=off\nstart-fast=y\n",
                r = root.display()
            )
            .as_bytes(),
        )?;
        Ok(Some(Self { conf, root }))
    }

    /// For the primary's archive_command, after the other copies.
    pub fn push_command(&self, primary_data: &Path) -> String {
        format!(
            "env -u LD_LIBRARY_PATH pgbackrest --config={} --stanza={STANZA} --pg1-path={} archive-push %p",
            self.conf.display(),
            primary_data.display()
        )
    }

    /// `stanza-create` against the running primary, as its OS user.
    pub fn create_stanza(&self, primary: &Server) -> Result<()> {
        let out = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "env",
                "-u",
                "LD_LIBRARY_PATH",
                "pgbackrest",
            ])
            .arg(format!("--config={}", self.conf.display()))
            .arg(format!("--stanza={STANZA}"))
            .arg(format!("--pg1-path={}", primary.data.display()))
            .arg(format!("--pg1-socket-path={}", primary.dir.display()))
            .arg(format!("--pg1-port={}", primary.port))
            .arg("stanza-create")
            .output()?;
        ensure!(
            out.status.success(),
            "pgbackrest stanza-create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The standby's restore_command: asynchronous archive-get with its own
    /// spool. `{NAME}` stands for the standby's name (its data directory).
    pub fn get_command(&self, sb: &Sandbox, process_max: u32) -> String {
        format!(
            "env -u LD_LIBRARY_PATH pgbackrest --config={} --stanza={STANZA} --pg1-path={}/{{NAME}}/data \
             --archive-async --spool-path={}/spool-{{NAME}} --process-max={process_max} archive-get %f \"%p\"",
            self.conf.display(),
            sb.path().display(),
            self.root.display()
        )
    }
}
