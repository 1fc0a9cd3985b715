//! `tessera-fakes <name> --listen 127.0.0.1:PORT`: runs one fake until interrupted and
//! prints `ready <base url>` once it accepts connections.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .map_or("127.0.0.1:0", String::as_str);
    match args.first().map(String::as_str) {
        Some("smtp") => {
            let fake = match tessera_fakes::smtp::SmtpFake::start(listen).await {
                Ok(fake) => fake,
                Err(e) => {
                    eprintln!("error: cannot listen on {listen}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!("ready {}", fake.url());
            let _ = tokio::signal::ctrl_c().await;
            for message in fake.received() {
                eprintln!("received mail from {} to {:?}", message.from, message.to);
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: tessera-fakes smtp [--listen 127.0.0.1:PORT]");
            ExitCode::from(2)
        }
    }
}
