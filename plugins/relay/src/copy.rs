//! Moving bytes through a user-space buffer: for TLS and Unix sockets, which splice cannot
//! reach through `Stream`, and for `--no-splice`.

use crate::End;
use plugin_api::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Each direction starts with a small buffer, so a thousand idle relays hold little memory…
const FIRST_BUFFER_BYTES: usize = 4 << 10;
/// …and grows to this once a read fills it, so a fast stream costs few system calls.
const BUFFER_BYTES: usize = 64 << 10;

/// Moves bytes from `from` to `to` until `from` closes (then shuts down `to`'s write side) or
/// either fails. Nothing more is read until what was read has been written.
pub async fn one_way<R, W>(from: &mut R, to: &mut W, moved: &mut u64) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0; FIRST_BUFFER_BYTES];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(n) => n,
            Err(e) => return End::ReadFailed(e),
        };
        let full = n == buffer.len();
        if n == 0 {
            return match to.shutdown().await {
                Ok(()) => End::Closed,
                Err(e) => End::close_failed(e),
            };
        }
        if let Err(e) = async {
            to.write_all(&buffer[..n]).await?;
            to.flush().await
        }
        .await
        {
            return End::WriteFailed(e);
        }
        *moved += n as u64;
        if full && buffer.len() < BUFFER_BYTES {
            buffer.resize(BUFFER_BYTES, 0);
        }
    }
}
