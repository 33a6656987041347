//! Mail through an SMTP server that requires STARTTLS and AUTH (issue 12, item 4): Cairn
//! upgrades the connection, checks the server's certificate against `CAIRN_SMTP_CA_FILE`, and
//! signs in with the credentials of `SMTP_URL`.

use crate::support;

use std::time::Duration;

use support::smtp::{self as tls_smtp, Seen};

/// The next thing the server saw, within 10 s.
async fn seen(server: &mut tls_smtp::TlsSmtp) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), server.seen.recv())
        .await
        .expect("the SMTP server saw something in time")
        .expect("the SMTP server runs")
}

#[tokio::test]
async fn sign_in_mail_goes_through_starttls_with_auth_plain_and_login() {
    for mechanism in ["PLAIN", "LOGIN"] {
        let mut server = tls_smtp::start(mechanism).await;
        let app = support::spawn_app_with(&[
            (
                "SMTP_URL",
                // The password is percent-encoded in the URL: `p@ss word`.
                format!(
                    "smtp://mailer:p%40ss%20word@127.0.0.1:{}?tls=required",
                    server.port
                ),
            ),
            ("CAIRN_SMTP_CA_FILE", server.ca_file.display().to_string()),
        ])
        .await;
        let r = app.send_link(&support::browser(), "ada@example.com").await;
        assert_eq!(r.status(), 202, "{mechanism}");
        let mail = match seen(&mut server).await {
            Seen::Delivered(mail) => mail,
            Seen::HandshakeFailed(e) => panic!("{mechanism}: the TLS handshake failed: {e}"),
        };
        assert!(mail.tls, "{mechanism}: upgraded with STARTTLS");
        assert_eq!(mail.mechanism, mechanism);
        assert_eq!(
            (mail.username.as_str(), mail.password.as_str()),
            ("mailer", "p@ss word"),
            "{mechanism}"
        );
        assert_eq!(mail.recipients, ["ada@example.com"], "{mechanism}");
        assert!(
            support::find_link(&mail.message).is_some(),
            "{mechanism}: the mail holds a sign-in link"
        );
        app.stop().await;
        let _ = std::fs::remove_file(&server.ca_file);
    }
}

#[tokio::test]
async fn a_certificate_nobody_vouches_for_is_refused() {
    // Without CAIRN_SMTP_CA_FILE the self-signed certificate is not trusted: the handshake
    // fails and no mail is handed over.
    let mut server = tls_smtp::start("PLAIN").await;
    let app = support::spawn_app_with(&[(
        "SMTP_URL",
        format!(
            "smtp://mailer:secret@127.0.0.1:{}?tls=required",
            server.port
        ),
    )])
    .await;
    let r = app.send_link(&support::browser(), "ada@example.com").await;
    assert_eq!(r.status(), 202);
    match seen(&mut server).await {
        Seen::HandshakeFailed(_) => {}
        Seen::Delivered(mail) => panic!("delivered over an untrusted certificate: {mail:?}"),
    }
    app.stop().await;
    let _ = std::fs::remove_file(&server.ca_file);
}
