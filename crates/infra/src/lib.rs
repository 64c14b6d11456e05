//! Private PostgreSQL and Redis instances started from the machine's own
//! server binaries, in a data folder, for `confab up` with nothing configured,
//! and the free-port helper the test harness uses. Neither service needs
//! this, so it is its own crate rather than part of `confab-core`; the harness
//! can use it without depending on the binary crate.
//! They listen only on Unix sockets in folders no other user can enter (no
//! TCP port at all): they never collide with servers the machine already
//! runs, and PostgreSQL's trust authentication and Redis's lack of a password
//! open them to this user alone.

use std::{
    net::TcpListener,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use confab_core::clock;

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("{what} not found: install it with `apt-get install -y {package}`")]
    Missing { what: String, package: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// PostgreSQL's own binaries: the newest `/usr/lib/postgresql/*/bin`, else `$PATH`.
fn pg_bindir() -> Result<PathBuf, InfraError> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    if let Some((_, d)) = dirs.pop() {
        return Ok(d);
    }
    which("postgres")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| InfraError::Missing {
            what: "the PostgreSQL server (initdb, postgres)".into(),
            package: "postgresql".into(),
        })
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

/// A free TCP port on loopback for a server started next, which binds it
/// itself (the port is checked by binding it, then released).
///
/// The port comes from below the kernel's ephemeral range: every port that
/// `bind(0)` hands out (what each of our own listeners asks for) and every
/// outgoing connection's source port lies in that range, so none of them can
/// take this one between the check and the child's bind. Within a process
/// the same port is not handed out twice in a row of calls. With a port from
/// `bind(0)`, a test once lost that race: the payments stand-in, binding
/// port 0, got the port just chosen for localstripe and forwarded each
/// request to itself until the test process ran out of file descriptors.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some((low, span)) = below_ephemeral() else {
        return Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port());
    };
    // A different starting point per process, so that two test binaries
    // starting servers at the same moment do not try the same ports.
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // The standard library's per-process random hash keys.
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32
    });
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + (start.wrapping_add(n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port below the ephemeral range",
    ))
}

/// Ports from 10000 up to the start of the kernel's ephemeral range, as
/// `(first, count)`; `None` when the range is unknown or leaves too few.
fn below_ephemeral() -> Option<(u16, u32)> {
    const FIRST: u32 = 10_000;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u32 = range.split_whitespace().next()?.parse().ok()?;
    (low >= FIRST + 1_000).then(|| (FIRST as u16, low - FIRST))
}

/// PostgreSQL refuses to run as root; as root we run it as the `postgres`
/// user that Debian's package creates.
fn pg_command(bin: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), InfraError> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(InfraError::Failed {
            what: what.into(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// A folder for a server's socket that only its owner can enter: the data
/// folder itself when the socket path fits the 107-byte limit of Unix socket
/// names, else a short folder under /tmp named after the data folder.
fn socket_dir(data: &Path, kind: &str) -> Result<PathBuf, InfraError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = if data.as_os_str().len() + 20 < 100 {
        data.to_path_buf()
    } else {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&data, &mut h);
        let d = PathBuf::from(format!(
            "/tmp/confab-{kind}-{:016x}",
            std::hash::Hasher::finish(&h)
        ));
        std::fs::create_dir_all(&d)?;
        d
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    if kind == "pg" && running_as_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["postgres:postgres"]).arg(&dir);
                c
            },
            "chown of the PostgreSQL socket folder",
        )?;
    }
    Ok(dir)
}

/// As root, PostgreSQL runs as the `postgres` user, who must be able to
/// reach its data folder. When a parent folder is closed to it (a checkout
/// under /root, say) the cluster lives under /var/lib/confab instead, in a
/// folder named after the requested one, so it is still reused next time.
fn postgres_reachable(dir: &Path) -> Result<PathBuf, InfraError> {
    if !running_as_root() {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(parent)
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        return Ok(dir.to_path_buf());
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&dir, &mut h);
    let moved = PathBuf::from(format!(
        "/var/lib/confab/{:016x}/postgres",
        std::hash::Hasher::finish(&h)
    ));
    std::fs::create_dir_all(&moved)?;
    tracing::warn!(
        requested = %dir.display(),
        used = %moved.display(),
        "the postgres user cannot reach the data folder; keeping PostgreSQL's files elsewhere"
    );
    Ok(moved)
}

pub struct PrivatePostgres {
    pub url: String,
    dir: PathBuf,
    bindir: PathBuf,
}

impl PrivatePostgres {
    /// Initialise (first time) and start a PostgreSQL in `dir`; waits until it
    /// accepts connections.
    pub fn start(dir: &Path) -> Result<Self, InfraError> {
        let bindir = pg_bindir()?;
        std::fs::create_dir_all(dir)?;
        let dir = postgres_reachable(&dir.canonicalize()?)?;
        if running_as_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&dir);
                    c
                },
                "chown of the PostgreSQL data folder",
            )?;
        }
        if !dir.join("PG_VERSION").exists() {
            let mut c = pg_command(&bindir.join("initdb"));
            c.arg("-D").arg(&dir).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]);
            run(c, "initdb")?;
        }
        // A server left running by a crashed `confab up` would hold the folder.
        let _ = Self::stop_dir(&bindir, &dir);
        let sockets = socket_dir(&dir, "pg")?;
        let mut c = pg_command(&bindir.join("pg_ctl"));
        c.arg("start")
            .arg("-D")
            .arg(&dir)
            .arg("-l")
            .arg(dir.join("server.log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-c listen_addresses='' -c unix_socket_directories={} -c unix_socket_permissions=0700",
                sockets.display()
            ));
        run(c, "pg_ctl start")?;
        Ok(Self {
            url: format!(
                "postgres://postgres@localhost/confab?host={}",
                sockets.display()
            ),
            dir,
            bindir,
        })
    }

    fn stop_dir(bindir: &Path, dir: &Path) -> Result<(), InfraError> {
        if !dir.join("postmaster.pid").exists() {
            return Ok(());
        }
        let mut c = pg_command(&bindir.join("pg_ctl"));
        c.arg("stop").arg("-D").arg(dir).args(["-m", "fast", "-w"]);
        run(c, "pg_ctl stop")
    }

    pub fn stop(&self) -> Result<(), InfraError> {
        Self::stop_dir(&self.bindir, &self.dir)
    }
}

pub struct PrivateRedis {
    pub url: String,
    child: Child,
}

impl PrivateRedis {
    /// Start a `redis-server` that keeps nothing on disk (Redis only holds
    /// state that can be rebuilt), on a private Unix socket.
    pub fn start(dir: &Path) -> Result<Self, InfraError> {
        let bin = which("redis-server")
            .or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.exists()))
            .ok_or_else(|| InfraError::Missing {
                what: "the Redis server (redis-server)".into(),
                package: "redis-server".into(),
            })?;
        std::fs::create_dir_all(dir)?;
        // Absolute: redis-server changes into `--dir` before it binds.
        let dir = &dir.canonicalize()?;
        let socket = socket_dir(dir, "redis")?.join("redis.sock");
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::create(dir.join("redis.log"))?;
        let child = Command::new(bin)
            .args(["--port", "0", "--unixsocketperm", "700", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        // redis-server offers nothing to wait on but its socket appearing.
        let deadline = clock::instant() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if clock::instant() > deadline {
                return Err(InfraError::Failed {
                    what: "redis-server".into(),
                    detail: format!(
                        "not accepting connections; see {}",
                        dir.join("redis.log").display()
                    ),
                });
            }
            clock::blocking_sleep(Duration::from_millis(50));
        }
        Ok(Self {
            url: format!("redis+unix://{}", socket.display()),
            child,
        })
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{below_ephemeral, free_port};
    use std::net::TcpListener;

    #[test]
    fn free_ports_lie_where_no_bind_to_port_zero_can_take_them() {
        let (first, count) = below_ephemeral().expect("the ephemeral range is readable");
        let end = u32::from(first) + count;
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b, "handed out twice in a row");
        for p in [a, b] {
            assert!((u32::from(first)..end).contains(&u32::from(p)), "{p}");
            // Free: the child can bind it.
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
        let zero = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        assert!(u32::from(zero.local_addr().unwrap().port()) >= end);
    }
}
