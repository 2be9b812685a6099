//! The standard Autobahn|Testsuite client testee.
//!
//! ```text
//! cargo run --release --example autobahn_client [BASE_URL]   # default ws://127.0.0.1:9001
//! ```
//!
//! Asks `/getCaseCount`, runs `/runCase?case=N&agent=stdws` for every case (echoing every
//! message until the server closes), then `/updateReports?agent=stdws`. `AUTOBAHN_URL` is used
//! when no argument is given.

use stdws::{Error, Message};

const AGENT: &str = "stdws";

fn main() {
    let base = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("AUTOBAHN_URL").ok())
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = base.trim_end_matches('/');
    let count = match case_count(base) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("autobahn_client: cannot get the case count from {base}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("autobahn_client: running {count} cases");
    for case in 1..=count {
        if let Err(e) = run_case(&format!("{base}/runCase?case={case}&agent={AGENT}")) {
            // Many cases end in an error on purpose (the fuzzer breaks the protocol).
            eprintln!("case {case}: {e}");
        }
    }
    match stdws::connect(&format!("{base}/updateReports?agent={AGENT}")) {
        Ok((mut ws, _)) => {
            let _ = ws.close(1000, "");
            while ws.read().is_ok() {}
        }
        Err(e) => {
            eprintln!("autobahn_client: updateReports failed: {e}");
            std::process::exit(1);
        }
    }
}

fn case_count(base: &str) -> Result<u32, Error> {
    let (mut ws, _) = stdws::connect(&format!("{base}/getCaseCount"))?;
    loop {
        if let Message::Text(text) = ws.read()? {
            let _ = ws.close(1000, "");
            while ws.read().is_ok() {}
            return text
                .trim()
                .parse()
                .map_err(|_| Error::InvalidInput("case count is not a number"));
        }
    }
}

fn run_case(url: &str) -> Result<(), Error> {
    let builder = stdws::ClientBuilder::new(url);
    // Built with `--features deflate`, offer permessage-deflate.
    #[cfg(feature = "deflate")]
    let builder =
        builder.config(stdws::Config::default().deflate(Some(stdws::DeflateConfig::default())));
    let (mut ws, _) = builder.connect()?;
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => ws.write(msg)?,
            Ok(_) => {}
            Err(Error::ConnectionClosed(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
