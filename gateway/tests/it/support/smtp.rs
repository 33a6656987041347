//! A real SMTP server that requires STARTTLS (tokio-rustls, with a certificate for 127.0.0.1
//! from a private CA made at start) and AUTH PLAIN or LOGIN before it takes mail.

use std::path::PathBuf;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_rustls::rustls;

/// What the server saw.
#[derive(Debug)]
pub enum Seen {
    /// A TLS handshake failed (the client refused the certificate, say).
    HandshakeFailed(String),
    /// A message was accepted.
    Delivered(Delivery),
}

/// One accepted message and how its sender got in.
#[derive(Debug)]
pub struct Delivery {
    /// Whether the session was upgraded with STARTTLS before AUTH.
    pub tls: bool,
    /// `PLAIN` or `LOGIN`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
    pub recipients: Vec<String>,
    pub message: String,
}

pub struct TlsSmtp {
    pub port: u16,
    /// The private CA's certificate as PEM (to trust it as a root).
    pub ca_file: PathBuf,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

/// Starts the server; it offers AUTH `mechanism` (`PLAIN` or `LOGIN`) only after STARTTLS.
pub async fn start(mechanism: &'static str) -> TlsSmtp {
    // A private CA (whose certificate is the CA file) and the server's certificate for
    // 127.0.0.1, signed by it.
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Cairn test CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let ca_file = std::env::temp_dir().join(format!(
        "cairn-test-smtp-{}.pem",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&ca_file, ca.pem()).expect("write ca file");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        server_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![server.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind smtp");
    let port = listener.local_addr().expect("addr").port();
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, acceptor) = (tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                let mut plain = BufReader::new(stream);
                let _ = plain.write_all(b"220 cairn-test ESMTP\r\n").await;
                let mut session = Session::new(mechanism);
                if converse(&mut plain, &mut session, &tx).await != Next::StartTls {
                    return;
                }
                match acceptor.accept(plain.into_inner()).await {
                    Ok(tls) => {
                        session.tls = true;
                        let _ = converse(&mut BufReader::new(tls), &mut session, &tx).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Seen::HandshakeFailed(e.to_string()));
                    }
                }
            });
        }
    });
    TlsSmtp {
        port,
        ca_file,
        seen,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    StartTls,
    Done,
}

struct Session {
    offered: &'static str,
    tls: bool,
    /// `(mechanism, username, password)` once authenticated.
    auth: Option<(String, String, String)>,
    recipients: Vec<String>,
}

impl Session {
    fn new(offered: &'static str) -> Self {
        Self {
            offered,
            tls: false,
            auth: None,
            recipients: Vec::new(),
        }
    }
}

async fn read_line<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> Option<String> {
    let mut line = String::new();
    match io.read_line(&mut line).await {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

/// Speaks SMTP on `io` until the client quits, goes away, or asks for STARTTLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    session: &mut Session,
    tx: &mpsc::UnboundedSender<Seen>,
) -> Next {
    while let Some(line) = read_line(io).await {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            if session.tls {
                format!(
                    "250-cairn-test\r\n250-AUTH {}\r\n250 8BITMIME\r\n",
                    session.offered
                )
            } else {
                "250-cairn-test\r\n250-STARTTLS\r\n250 8BITMIME\r\n".to_owned()
            }
        } else if upper.starts_with("STARTTLS") && !session.tls {
            let _ = io.write_all(b"220 ready to start TLS\r\n").await;
            return Next::StartTls;
        } else if upper.starts_with("AUTH PLAIN") && session.tls && session.offered == "PLAIN" {
            let initial = line[10..].trim().to_owned();
            let encoded = if initial.is_empty() {
                let _ = io.write_all(b"334 \r\n").await;
                read_line(io).await.unwrap_or_default().trim().to_owned()
            } else {
                initial
            };
            let decoded = String::from_utf8(decode_base64(&encoded)).unwrap_or_default();
            let mut parts = decoded.split('\0').skip(1);
            let user = parts.next().unwrap_or_default().to_owned();
            let pass = parts.next().unwrap_or_default().to_owned();
            session.auth = Some(("PLAIN".to_owned(), user, pass));
            "235 authenticated\r\n".to_owned()
        } else if upper.starts_with("AUTH LOGIN") && session.tls && session.offered == "LOGIN" {
            let _ = io.write_all(b"334 VXNlcm5hbWU6\r\n").await;
            let user = read_line(io).await.unwrap_or_default();
            let _ = io.write_all(b"334 UGFzc3dvcmQ6\r\n").await;
            let pass = read_line(io).await.unwrap_or_default();
            let text = |s: &str| String::from_utf8(decode_base64(s.trim())).unwrap_or_default();
            session.auth = Some(("LOGIN".to_owned(), text(&user), text(&pass)));
            "235 authenticated\r\n".to_owned()
        } else if upper.starts_with("AUTH") {
            "504 mechanism not offered here\r\n".to_owned()
        } else if upper.starts_with("MAIL FROM:") && session.auth.is_none() {
            "530 authentication required\r\n".to_owned()
        } else if upper.starts_with("RCPT TO:") {
            let addr = line[8..].trim().trim_matches(|c| c == '<' || c == '>');
            session.recipients.push(addr.to_owned());
            "250 OK\r\n".to_owned()
        } else if upper.starts_with("DATA") {
            let _ = io.write_all(b"354 go ahead\r\n").await;
            let mut message = String::new();
            loop {
                let Some(line) = read_line(io).await else {
                    return Next::Done;
                };
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let (mechanism, username, password) = session.auth.clone().unwrap_or_default();
            let _ = tx.send(Seen::Delivered(Delivery {
                tls: session.tls,
                mechanism,
                username,
                password,
                recipients: std::mem::take(&mut session.recipients),
                message,
            }));
            "250 queued\r\n".to_owned()
        } else if upper.starts_with("QUIT") {
            let _ = io.write_all(b"221 bye\r\n").await;
            return Next::Done;
        } else {
            // MAIL FROM (authenticated), RSET, NOOP
            "250 OK\r\n".to_owned()
        };
        if io.write_all(reply.as_bytes()).await.is_err() {
            return Next::Done;
        }
    }
    Next::Done
}

/// Standard base64 (with or without padding); anything else decodes to what it can.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for sextet in text.bytes().filter_map(value) {
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}
