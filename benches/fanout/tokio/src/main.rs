//! The pub/sub contract of `examples/pubsub.rs` on tokio-tungstenite, the way its docs build
//! a server: a 2-worker multi-threaded runtime, one task per connection, and a
//! `tokio::sync::broadcast` channel per topic (the request path). A connection's task
//! publishes what its client sends to the topic's channel and forwards what the channel
//! yields to its client, the sender included. A receiver that lags behind the channel's
//! capacity (a client that does not read fast enough) is dropped.
//!
//! ```text
//! fanout-tokio [ADDR]        # default 127.0.0.1:9002
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Messages a topic's channel keeps for its slowest receiver; behind that, it is dropped.
const CAPACITY: usize = 4096;

type Topics = Arc<Mutex<HashMap<String, broadcast::Sender<Message>>>>;

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9002".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(addr));
}

async fn serve(addr: String) {
    let listener = TcpListener::bind(&addr).await.expect("bind");
    let topics = Topics::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, Arc::clone(&topics)));
            }
            Err(e) => {
                eprintln!("fanout-tokio: accept: {e}");
                tokio::task::yield_now().await;
            }
        }
    }
}

async fn connection(stream: TcpStream, topics: Topics) {
    let _ = stream.set_nodelay(true);
    let mut topic = String::new();
    let callback = |req: &Request, resp: Response| {
        topic = req.uri().path().to_owned();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let tx = topics
        .lock()
        .unwrap()
        .entry(topic.clone())
        .or_insert_with(|| broadcast::channel(CAPACITY).0)
        .clone();
    let mut rx = tx.subscribe();
    let (mut sink, mut source) = ws.split();
    loop {
        tokio::select! {
            incoming = source.next() => match incoming {
                Some(Ok(msg)) if msg.is_text() || msg.is_binary() => {
                    let _ = tx.send(msg);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {} // pings are answered by the library
            },
            outgoing = rx.recv() => match outgoing {
                Ok(msg) => {
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
                // Too slow: the channel overwrote messages this client had not been sent.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
            },
        }
    }
    drop(rx);
    let mut topics = topics.lock().unwrap();
    if tx.receiver_count() == 0 {
        topics.remove(&topic);
    }
}
