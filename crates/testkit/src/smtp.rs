//! The SMTP server of the tests: PyPI's `aiosmtpd` (installed by
//! `scripts/deps.sh --browser` into `smtp-capture/pydeps`), started per test
//! on a free loopback port with its own Maildir handler
//! (`python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox DIR`).
//! Every message auth sends lands as a file in the test's artifacts folder
//! (`mail/new/`); tests read them back, follow their links.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp-capture");

pub struct SmtpCapture {
    pub port: u16,
    maildir: PathBuf,
    child: Child,
}

/// One captured message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    /// The decoded text body.
    pub text: String,
    /// The raw message as it arrived.
    pub raw: String,
}

impl Mail {
    /// The first `http(s)://` link of the text.
    pub fn link(&self) -> Option<String> {
        let start = self.text.find("http://").or(self.text.find("https://"))?;
        let rest = &self.text[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        Some(rest[..end].to_string())
    }
}

impl SmtpCapture {
    pub async fn start(artifacts: &Path) -> Self {
        let pydeps = Path::new(DIR).join("pydeps");
        assert!(
            pydeps.join("aiosmtpd").exists(),
            "the test SMTP capture server is not installed: run ./scripts/deps.sh --browser (pip install into {})",
            pydeps.display()
        );
        let maildir = artifacts.join("mail");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
        }
        let port = confab_infra::free_port().expect("free port");
        let log = std::fs::File::create(artifacts.join("smtp.log")).expect("log file");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .env("PYTHONPATH", &pydeps)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start python3 -m aiosmtpd: {e}"));
        let mut capture = Self {
            port,
            maildir,
            child,
        };
        // Ready once it greets: a connection alone could reach the socket
        // before the server loop runs.
        let deadline = confab_core::clock::instant() + Duration::from_secs(15);
        loop {
            if let Ok(Ok(mut s)) = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            {
                use tokio::io::AsyncReadExt;
                let mut greeting = [0u8; 3];
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut greeting)).await
                {
                    if &greeting == b"220" {
                        break;
                    }
                }
            }
            if let Ok(Some(status)) = capture.child.try_wait() {
                panic!(
                    "aiosmtpd exited ({status}); its log:\n{}",
                    std::fs::read_to_string(artifacts.join("smtp.log")).unwrap_or_default()
                );
            }
            assert!(
                confab_core::clock::instant() < deadline,
                "aiosmtpd did not start listening on {port}"
            );
            confab_core::clock::sleep(Duration::from_millis(20)).await;
        }
        capture
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<_> = std::fs::read_dir(self.maildir.join("new"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        // Maildir names start with the delivery time in seconds; within one
        // second the modification time orders them.
        files.sort_by_key(|p| {
            (
                std::fs::metadata(p).and_then(|m| m.modified()).ok(),
                p.clone(),
            )
        });
        files
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|raw| parse(&raw))
            .collect()
    }

    /// The messages sent to `to`, once there are `n` of them (at most 10 s).
    pub async fn wait_for(&self, to: &str, n: usize) -> Vec<Mail> {
        crate::eventually(10, &format!("{n} email(s) to {to}"), || async {
            let got: Vec<Mail> = self
                .messages()
                .into_iter()
                .filter(|m| m.to.contains(to))
                .collect();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Drop for SmtpCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headers (unfolded) and the body of a plain-text message, decoding the
/// transfer encodings lettre uses for text (7bit, quoted-printable, base64).
fn parse(raw: &str) -> Mail {
    let raw_n = raw.replace("\r\n", "\n");
    let (head, body) = raw_n.split_once("\n\n").unwrap_or((&raw_n, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let text = match header("content-transfer-encoding")
        .to_ascii_lowercase()
        .as_str()
    {
        "quoted-printable" => quoted_printable(body),
        "base64" => {
            use base64::Engine as _;
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("base64 body");
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_string(),
    };
    Mail {
        from: header("from"),
        to: header("to"),
        subject: header("subject"),
        text,
        raw: raw.to_string(),
    }
}

fn quoted_printable(body: &str) -> String {
    let mut out = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_quoted_printable_and_finds_the_link() {
        let raw = "From: Confab <c@x.org>\r\nTo: a@b.org\r\nSubject: Hi\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                   Open http://127.0.0.1:1/email/confirm#token=3Dab=\r\ncd now =E2=80=94 ok\r\n";
        let m = parse(raw);
        assert_eq!(m.subject, "Hi");
        assert_eq!(
            m.link().unwrap(),
            "http://127.0.0.1:1/email/confirm#token=abcd"
        );
        assert!(m.text.contains("now \u{2014} ok"));
    }
}
