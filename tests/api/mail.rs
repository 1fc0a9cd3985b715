//! Mail over real SMTP: the `smtp` transport delivers to a loopback SMTP server, and that
//! server speaks the protocol a real one does.

use serde_json::json;
use tessera_fakes::smtp::SmtpFake;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn the_smtp_transport_delivers_verification_mail() {
    let smtp = SmtpFake::start("127.0.0.1:0").await.unwrap();
    let url = smtp.url();
    let app = TestApp::builder()
        .configure(move |c| {
            c.mail.mail_transport = tessera::platform::mail::MailTransport::Smtp;
            c.mail.smtp_url = Some(url.parse().unwrap());
            c.mail.mail_from = "Tessera <no-reply@tessera.test>".into();
        })
        .spawn()
        .await;
    let body = app
        .graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }",
            json!({ "i": { "email": "mailme@example.com", "username": "mailme", "password": PASSWORD } }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");

    let received = smtp.received();
    assert_eq!(received.len(), 1, "one verification mail");
    let mail = &received[0];
    assert_eq!(mail.from, "no-reply@tessera.test");
    assert_eq!(mail.to, vec!["mailme@example.com".to_owned()]);
    let text = mail.text();
    assert!(
        text.contains("Subject: Confirm your email address"),
        "{text}"
    );
    assert!(
        text.contains("multipart/alternative"),
        "text and HTML parts: {text}"
    );
    assert!(text.contains("/verify-email?token=tsr_ev_"), "{text}");
}

#[tokio::test]
async fn the_smtp_fake_speaks_smtp() {
    let fake = SmtpFake::start("127.0.0.1:0").await.unwrap();
    let socket = TcpStream::connect(fake.addr()).await.unwrap();
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with("220"));
    // Refusals first: RCPT and DATA need MAIL.
    write
        .write_all(b"RCPT TO:<b@example.com>\r\n")
        .await
        .unwrap();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with("503"));
    write.write_all(b"DATA\r\n").await.unwrap();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with("503"));
    for (send, expect) in [
        ("HELO test\r\n", "250"),
        ("MAIL FROM:<a@example.com>\r\n", "250"),
        ("RCPT TO:<b@example.com>\r\n", "250"),
        ("DATA\r\n", "354"),
        (
            "Subject: hi\r\n\r\n..dotted\r\nline\r\n.\r\n",
            "250 OK: queued",
        ),
        ("QUIT\r\n", "221"),
    ] {
        write.write_all(send.as_bytes()).await.unwrap();
        let reply = lines.next_line().await.unwrap().unwrap();
        assert!(reply.starts_with(expect), "{send:?} -> {reply}");
    }
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].from, "a@example.com");
    assert_eq!(received[0].to, vec!["b@example.com".to_owned()]);
    assert_eq!(
        received[0].data, "Subject: hi\r\n\r\n.dotted\r\nline\r\n",
        "dot-unstuffed"
    );
}
