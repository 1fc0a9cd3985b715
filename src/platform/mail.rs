//! Outgoing mail through one of three transports:
//!
//! - `log` (the default): each mail is printed to the log (target `tessera::mail`), so a
//!   developer on `cargo run` can follow the link. It prints codes and links by design: use
//!   `smtp` anywhere real.
//! - `smtp`: lettre over SMTP (`SMTP_URL`, e.g. `smtps://user:pass@mail.example.com` or
//!   `smtp://host:587?tls=required`), pooled.
//! - `memory`: kept in an outbox that tests read.

use std::sync::{Arc, Mutex};

use clap::{Args, ValueEnum};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};

use crate::config::{ConfigError, SecretUrl};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MailTransport {
    /// Print each mail to the log (development).
    Log,
    /// Send through SMTP_URL.
    Smtp,
    /// Keep mail in memory (tests).
    Memory,
}

#[derive(Debug, Clone, Args)]
pub struct MailConfig {
    /// How mail leaves the server.
    #[arg(
        long,
        env = "MAIL_TRANSPORT",
        value_name = "MAIL_TRANSPORT",
        value_enum,
        default_value = "log"
    )]
    pub mail_transport: MailTransport,

    /// SMTP server for MAIL_TRANSPORT=smtp: smtps://USER:PASSWORD@HOST[:PORT] (implicit TLS) or
    /// smtp://USER:PASSWORD@HOST:587?tls=required (STARTTLS).
    #[arg(long, env = "SMTP_URL", value_name = "SMTP_URL")]
    pub smtp_url: Option<SecretUrl>,

    /// Sender of every mail.
    #[arg(
        long,
        env = "MAIL_FROM",
        value_name = "MAIL_FROM",
        default_value = "Tessera <no-reply@localhost>"
    )]
    pub mail_from: String,
}

impl MailConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mail_from.parse::<Mailbox>().is_err() {
            return Err(ConfigError {
                variable: "MAIL_FROM",
                message: "must be an address such as Tessera <no-reply@example.com>".into(),
            });
        }
        if self.mail_transport == MailTransport::Smtp && self.smtp_url.is_none() {
            return Err(ConfigError {
                variable: "SMTP_URL",
                message: "is required when MAIL_TRANSPORT=smtp".into(),
            });
        }
        Ok(())
    }
}

/// A mail as the application composes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the mail could not be built: {0}")]
    Build(String),
    #[error("the mail could not be sent: {0}")]
    Send(String),
}

enum Transport {
    Log,
    Memory(Arc<Mutex<Vec<OutgoingMail>>>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

impl Mailer {
    pub fn new(config: &MailConfig) -> anyhow::Result<Self> {
        let from = config
            .mail_from
            .parse()
            .map_err(|e| anyhow::anyhow!("MAIL_FROM: {e}"))?;
        let transport = match config.mail_transport {
            MailTransport::Log => Transport::Log,
            MailTransport::Memory => Transport::Memory(Arc::default()),
            MailTransport::Smtp => {
                let url = config.smtp_url.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("SMTP_URL is required when MAIL_TRANSPORT=smtp")
                })?;
                if let Ok(parsed) = url::Url::parse(url.expose()) {
                    let plain =
                        parsed.scheme() == "smtp" && !parsed.query_pairs().any(|(k, _)| k == "tls");
                    let local =
                        matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                    if plain && !local {
                        tracing::warn!(
                            "SMTP_URL sends mail unencrypted; use smtps:// or ?tls=required"
                        );
                    }
                }
                Transport::Smtp(
                    AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                        .map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?
                        .build(),
                )
            }
        };
        Ok(Self { from, transport })
    }

    pub async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        match &self.transport {
            Transport::Log => {
                tracing::info!(
                    target: "tessera::mail",
                    to = %mail.to,
                    subject = %mail.subject,
                    "mail (log transport; configure MAIL_TRANSPORT=smtp to send it):\n{}",
                    mail.text
                );
                Ok(())
            }
            Transport::Memory(outbox) => {
                outbox.lock().unwrap_or_else(|e| e.into_inner()).push(mail);
                Ok(())
            }
            Transport::Smtp(smtp) => {
                let to: Mailbox = mail
                    .to
                    .parse()
                    .map_err(|e| MailError::Build(format!("{e}")))?;
                let message = Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(mail.subject)
                    .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
                    .map_err(|e| MailError::Build(e.to_string()))?;
                smtp.send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| MailError::Send(e.to_string()))
            }
        }
    }

    /// Mail sent so far, for the `memory` transport (empty otherwise).
    pub fn outbox(&self) -> Vec<OutgoingMail> {
        match &self.transport {
            Transport::Memory(outbox) => outbox.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            _ => Vec::new(),
        }
    }
}

/// Escapes text for HTML bodies.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
