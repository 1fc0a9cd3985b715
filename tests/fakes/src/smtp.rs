//! A small SMTP server (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
//! that keeps every accepted message in memory. No TLS and no authentication: it only ever
//! listens on loopback.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after DATA (headers and body), dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Received {
    /// The message text with quoted-printable soft line breaks and `=3D` undone, enough to
    /// find links and codes in it.
    pub fn text(&self) -> String {
        self.data.replace("=\r\n", "").replace("=3D", "=")
    }
}

/// A running fake; stops when dropped.
pub struct SmtpFake {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl SmtpFake {
    /// Listens on `addr` (port 0 for an ephemeral one).
    pub async fn start(addr: &str) -> std::io::Result<SmtpFake> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let _ = session(socket, store).await;
                });
            }
        });
        Ok(SmtpFake {
            addr,
            received,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:PORT`, for SMTP_URL.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Serves what was received over HTTP on `addr` (for tests in another process, such as
    /// the browser tests): `GET /messages` answers `[{"from", "to", "text"}]`, oldest first.
    pub async fn serve_inbox(&self, addr: &str) -> std::io::Result<SocketAddr> {
        use poem::{EndpointExt, Route, Server, handler, web::Data, web::Json};
        #[handler]
        fn messages(Data(store): Data<&Arc<Mutex<Vec<Received>>>>) -> Json<serde_json::Value> {
            let all = store.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Json(serde_json::Value::Array(
                all.iter()
                    .map(|m| serde_json::json!({ "from": m.from, "to": m.to, "text": m.text() }))
                    .collect(),
            ))
        }
        let (acceptor, bound) = crate::bind_http(addr).await?;
        let routes = Route::new()
            .at("/messages", poem::get(messages))
            .data(Arc::clone(&self.received));
        tokio::spawn(Server::new_with_acceptor(acceptor).run(routes));
        Ok(bound)
    }
}

impl Drop for SmtpFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg.rfind('>').unwrap_or(arg.len());
    arg.get(start..end).unwrap_or("").trim().to_owned()
}

async fn session(socket: TcpStream, store: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write
        .write_all(b"220 tessera-fakes ESMTP ready\r\n")
        .await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        let reply: &[u8] = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => b"250-tessera-fakes\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 tessera-fakes\r\n",
            "MAIL" => {
                from = Some(address(arg));
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" if from.is_some() => {
                to.push(address(arg));
                b"250 OK\r\n"
            }
            "RCPT" => b"503 MAIL first\r\n",
            "DATA" if from.is_some() && !to.is_empty() => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                store
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Received {
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut to),
                        data,
                    });
                b"250 OK: queued\r\n"
            }
            "DATA" => b"503 need MAIL and RCPT first\r\n",
            "RSET" => {
                from = None;
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}
