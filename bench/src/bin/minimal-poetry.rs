//! The baseline for `bench fastpoetry`: the least a tokio server can do to serve a poem.
//!
//! Usage: `minimal-poetry POEM_FILE`. Listens on 127.0.0.1 on a free port and announces it in
//! the same words as fastpoetry, so the bench finds both servers' ports the same way. No log
//! per connection: that cost belongs to `host`, and the comparison should show it.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or("usage: minimal-poetry POEM_FILE")?;
    let poem = Bytes::from(std::fs::read(&path)?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    println!("minimal-poetry starting on tcp:{port}:interface=127.0.0.1");
    // On a worker, as host's plugins accept, rather than in `main`'s thread: each accepted
    // connection's task then starts on the same worker, without a cross-thread wake-up.
    tokio::spawn(serve(listener, poem));
    // Exiting cleanly on SIGINT lets the bench stop both servers the same way and check both.
    Ok(tokio::signal::ctrl_c().await?)
}

async fn serve(listener: TcpListener, poem: Bytes) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let poem = poem.clone();
                tokio::spawn(async move {
                    // A client that goes away early is its own problem, as in fastpoetry.
                    let _ = stream.write_all(&poem).await;
                    let _ = stream.shutdown().await;
                });
            }
            // The same pause as fastpoetry, so both treat a failed accept alike.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
