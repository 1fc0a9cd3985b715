//! `tessera-fakes <name> --listen 127.0.0.1:PORT [options]`: runs one fake until interrupted
//! and prints `ready <base url>` once it accepts connections.
//!
//! - `smtp [--inbox 127.0.0.1:PORT]`: with `--inbox`, `GET /messages` there lists what arrived
//! - `upstream`: an HTTP and WebSocket site for the access proxy (see `upstream.rs`)
//! - `forwarder --upstream 127.0.0.1:PORT`: relays HTTP/1.1 and nothing else, on two worker
//!   threads; the proxy bench's reference (see `forwarder.rs`)
//! - `google` (any OpenID Connect issuer), `discord`, `github`, each with
//!   `--client-id ID --client-secret SECRET`; `POST /_control/user` sets the account the
//!   consent screen approves as, `POST /_control/deny` refuses the next one.
//! - `turnstile --secret SECRET [--hostname HOST]`: Turnstile's siteverify and a stand-in
//!   for its widget script, `/turnstile/v0/api.js` (see `ads.rs`)
//! - `google-ssv [--ssv-url URL] [--ad-seconds N]`: Google's SSV verifier-key server, ad
//!   server (VAST at `/gampad/ads`) and IMA SDK stand-in (`/js/sdkloader/ima3.js`); a
//!   completed ad's reward callback goes to the URL (see `ads.rs`)
//! - `stripe [--webhook-url URL] [--webhook-secret SECRET]…`: Stripe's API (see `stripe.rs`),
//!   posting signed events to the URL (one `v1` per secret); `POST /_control/…` drives the
//!   subscription life cycle.

use std::process::ExitCode;

use tessera_fakes::oauth::{Flavor, OAuthFake};

const USAGE: &str = "usage: tessera-fakes smtp [--listen 127.0.0.1:PORT] [--inbox 127.0.0.1:PORT]
       tessera-fakes upstream [--listen 127.0.0.1:PORT]
       tessera-fakes forwarder [--listen 127.0.0.1:PORT] --upstream 127.0.0.1:PORT
       tessera-fakes google-ssv [--listen 127.0.0.1:PORT] [--ssv-url URL] [--ad-seconds N]
       tessera-fakes stripe [--listen 127.0.0.1:PORT] [--webhook-url URL] [--webhook-secret SECRET]...
       tessera-fakes turnstile [--listen 127.0.0.1:PORT] --secret SECRET [--hostname HOST]
       tessera-fakes google|discord|github [--listen 127.0.0.1:PORT] --client-id ID --client-secret SECRET";

fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn cannot_listen(listen: &str, e: std::io::Error) -> ExitCode {
    eprintln!("error: cannot listen on {listen}: {e}");
    ExitCode::FAILURE
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = option(&args, "--listen").unwrap_or("127.0.0.1:0");
    let name = args.first().map(String::as_str).unwrap_or("");
    if name == "smtp" {
        let fake = match tessera_fakes::smtp::SmtpFake::start(listen).await {
            Ok(fake) => fake,
            Err(e) => return cannot_listen(listen, e),
        };
        if let Some(inbox) = option(&args, "--inbox") {
            match fake.serve_inbox(inbox).await {
                Ok(addr) => println!("inbox http://{addr}/messages"),
                Err(e) => return cannot_listen(inbox, e),
            }
        }
        println!("ready {}", fake.url());
        let _ = tokio::signal::ctrl_c().await;
        for message in fake.received() {
            eprintln!("received mail from {} to {:?}", message.from, message.to);
        }
        return ExitCode::SUCCESS;
    }
    if name == "upstream" {
        let fake = match tessera_fakes::upstream::Upstream::start(listen).await {
            Ok(fake) => fake,
            Err(e) => return cannot_listen(listen, e),
        };
        println!("ready {}", fake.url());
        let _ = tokio::signal::ctrl_c().await;
        return ExitCode::SUCCESS;
    }
    if name == "forwarder" {
        let Some(upstream) = option(&args, "--upstream").and_then(|a| a.parse().ok()) else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        let listener = match std::net::TcpListener::bind(listen) {
            Ok(listener) => listener,
            Err(e) => return cannot_listen(listen, e),
        };
        match listener.local_addr() {
            Ok(addr) => println!("ready http://{addr}"),
            Err(e) => return cannot_listen(listen, e),
        }
        // Two workers, as the server runs on this machine's two cores; this runtime is
        // current-thread, so they get a runtime of their own on a thread of their own.
        let relay = std::thread::spawn(move || -> std::io::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                tessera_fakes::forwarder::serve(listener, upstream).await
            })
        });
        return match relay.join() {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
            Err(_) => ExitCode::FAILURE,
        };
    }
    if name == "turnstile" {
        let Some(secret) = option(&args, "--secret") else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        let host = option(&args, "--hostname").unwrap_or("localhost");
        let fake = match tessera_fakes::ads::Turnstile::start(listen, secret, host).await {
            Ok(fake) => fake,
            Err(e) => return cannot_listen(listen, e),
        };
        println!("ready {}", fake.verify_url());
        let _ = tokio::signal::ctrl_c().await;
        return ExitCode::SUCCESS;
    }
    if name == "google-ssv" {
        let ssv_url = option(&args, "--ssv-url").map(str::to_owned);
        let seconds = option(&args, "--ad-seconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let fake = match tessera_fakes::ads::GoogleSsv::start_with(listen, ssv_url, seconds).await {
            Ok(fake) => fake,
            Err(e) => return cannot_listen(listen, e),
        };
        println!("ready {}", fake.keys_url());
        let _ = tokio::signal::ctrl_c().await;
        return ExitCode::SUCCESS;
    }
    if name == "stripe" {
        let fake = match tessera_fakes::stripe::StripeFake::start(listen).await {
            Ok(fake) => fake,
            Err(e) => return cannot_listen(listen, e),
        };
        let secrets: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "--webhook-secret")
            .map(|w| w[1].as_str())
            .collect();
        if let Some(url) = option(&args, "--webhook-url") {
            fake.set_webhook(url, &secrets);
        }
        println!("ready {}", fake.base_url());
        let _ = tokio::signal::ctrl_c().await;
        eprintln!(
            "emitted {} events, delivered {}",
            fake.events().len(),
            fake.deliveries().len()
        );
        return ExitCode::SUCCESS;
    }
    let Some(flavor) = Flavor::parse(name) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (Some(id), Some(secret)) = (
        option(&args, "--client-id"),
        option(&args, "--client-secret"),
    ) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let fake = match OAuthFake::start(flavor, listen, id, secret).await {
        Ok(fake) => fake,
        Err(e) => return cannot_listen(listen, e),
    };
    println!("ready {}", fake.url());
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
