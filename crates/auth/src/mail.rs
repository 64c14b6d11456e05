//! Outgoing email: the confirmation link of an email change and the notice
//! to the old address.
//!
//! Sent over SMTP with lettre when `CONFAB_SMTP_HOST` is set. Without it
//! (the default, and what `confab up` runs with), nothing is sent: each
//! message, link included, is written to auth's log instead, so a developer
//! or a one-machine install can still change an email by copying the link
//! from the console. Auth says so once at start.

use crate::{domain::Email, error::Error};
use confab_core::config::{ConfigError, Env};
use lettre::{
    message::{header::ContentType, Mailbox},
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
    Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use std::{fmt, time::Duration};

/// How the connection to the SMTP server is protected (`CONFAB_SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `starttls` (default, port 587): plain connection upgraded with
    /// STARTTLS, which is required.
    StartTls,
    /// `tls` (port 465): TLS from the first byte.
    Tls,
    /// `none` (port 25): no encryption, for a relay on the same machine or
    /// a test capture server.
    None,
}

/// Where mail goes (`CONFAB_SMTP_*`).
#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `None`: messages are logged, not sent.
    pub smtp: Option<SmtpConfig>,
    /// `CONFAB_SMTP_FROM` (default `Confab <confab@localhost>`).
    pub from: Mailbox,
}

impl MailConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let from_text = env.string("CONFAB_SMTP_FROM", "Confab <confab@localhost>");
        let from: Mailbox = from_text.parse().map_err(|e| {
            env.invalid(
                "CONFAB_SMTP_FROM",
                format!("not a mailbox like `Confab <confab@example.com>`: {e}"),
            )
        })?;
        let host = env
            .opt_string("CONFAB_SMTP_HOST")
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty());
        let Some(host) = host else {
            return Ok(Self { smtp: None, from });
        };
        let tls = match env.string("CONFAB_SMTP_TLS", "starttls").trim() {
            "starttls" => SmtpTls::StartTls,
            "tls" => SmtpTls::Tls,
            "none" => SmtpTls::None,
            _ => {
                return Err(env.invalid("CONFAB_SMTP_TLS", "must be starttls, tls or none"));
            }
        };
        let default_port = match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        };
        let port: u16 = env.parse("CONFAB_SMTP_PORT", default_port)?;
        if port == 0 {
            return Err(env.invalid("CONFAB_SMTP_PORT", "must be a port number (1-65535)"));
        }
        let secs: u64 = env.parse("CONFAB_SMTP_TIMEOUT_SECS", 10)?;
        if secs == 0 {
            return Err(env.invalid("CONFAB_SMTP_TIMEOUT_SECS", "must be at least 1 second"));
        }
        let username = env
            .opt_string("CONFAB_SMTP_USERNAME")
            .filter(|u| !u.is_empty());
        let password = env
            .opt_string("CONFAB_SMTP_PASSWORD")
            .filter(|p| !p.is_empty());
        if username.is_some() != password.is_some() {
            return Err(env.invalid(
                "CONFAB_SMTP_USERNAME",
                "set both CONFAB_SMTP_USERNAME and CONFAB_SMTP_PASSWORD, or neither",
            ));
        }
        Ok(Self {
            smtp: Some(SmtpConfig {
                host,
                port,
                tls,
                username,
                password,
                timeout: Duration::from_secs(secs),
            }),
            from,
        })
    }
}

/// One message to one person, plain text.
pub struct Outgoing<'a> {
    pub to: &'a Address,
    pub subject: &'a str,
    pub text: String,
}

/// Why a message was not sent (the details are for the log only).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// No SMTP configured: messages go to the log.
    Log { from: Mailbox },
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Result<Self, Error> {
        let from = config.from.clone();
        let Some(smtp) = &config.smtp else {
            tracing::warn!(
                "CONFAB_SMTP_HOST is not set: emails (email-change links) are written to this log instead of sent"
            );
            return Ok(Mailer::Log { from });
        };
        let tls = match smtp.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls | SmtpTls::Tls => {
                let params = TlsParameters::new(smtp.host.clone())
                    .map_err(|e| Error::Internal(format!("SMTP TLS set-up: {e}")))?;
                if smtp.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(smtp.timeout));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        tracing::info!(host = %smtp.host, port = smtp.port, tls = ?smtp.tls, "sending email over SMTP");
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from,
        })
    }

    pub async fn send(&self, mail: Outgoing<'_>) -> Result<(), MailError> {
        match self {
            Mailer::Smtp { transport, from } => {
                let message = Message::builder()
                    .from(from.clone())
                    .to(Mailbox::new(None, mail.to.clone()))
                    .subject(mail.subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.text)?;
                transport.send(message).await?;
                metrics::counter!("auth_emails_sent_total").increment(1);
                tracing::info!(subject = mail.subject, "email sent");
                Ok(())
            }
            Mailer::Log { from } => {
                tracing::warn!(
                    from = %from,
                    to = %mail.to,
                    subject = mail.subject,
                    text = %mail.text,
                    "email not sent (CONFAB_SMTP_HOST is not set); its text follows"
                );
                Ok(())
            }
        }
    }
}

/// The address as SMTP sees it. [`Email`] is stricter in most ways, but a
/// quoted local part it accepts may still be refused here: such an address
/// cannot be mailed, so it cannot be confirmed either.
pub fn address(email: &Email) -> Result<Address, Error> {
    email.as_str().parse().map_err(|_| {
        Error::validation(
            "new_email",
            "Confab cannot send email to this address; use another one.",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_host_mail_is_logged() {
        let c = MailConfig::from_env(&Env::new()).unwrap();
        assert!(c.smtp.is_none());
        assert_eq!(c.from.to_string(), "Confab <confab@localhost>");
    }

    #[test]
    fn settings_are_checked_and_ports_follow_tls() {
        let mut env = Env::new();
        env.set("CONFAB_SMTP_HOST", "smtp.example.com");
        let c = MailConfig::from_env(&env).unwrap().smtp.unwrap();
        assert_eq!((c.port, c.tls), (587, SmtpTls::StartTls));
        env.set("CONFAB_SMTP_TLS", "tls");
        assert_eq!(MailConfig::from_env(&env).unwrap().smtp.unwrap().port, 465);
        env.set("CONFAB_SMTP_TLS", "ssl");
        assert_eq!(
            MailConfig::from_env(&env).unwrap_err().var,
            "CONFAB_SMTP_TLS"
        );
        env.set("CONFAB_SMTP_TLS", "none");
        env.set("CONFAB_SMTP_USERNAME", "me");
        assert_eq!(
            MailConfig::from_env(&env).unwrap_err().var,
            "CONFAB_SMTP_USERNAME"
        );
        env.set("CONFAB_SMTP_PASSWORD", "secret");
        let c = MailConfig::from_env(&env).unwrap().smtp.unwrap();
        assert!(!format!("{c:?}").contains("secret"));
        env.set("CONFAB_SMTP_FROM", "not a mailbox");
        assert_eq!(
            MailConfig::from_env(&env).unwrap_err().var,
            "CONFAB_SMTP_FROM"
        );
    }
}
