//! Datagram ingest: one blocking receive thread per input, never blocked by the decoder.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};

use super::Shared;
use crate::config::InputConfig;

/// Binds a UDP socket with the configured receive buffer; warns when the kernel caps it.
pub fn bind_udp(input: &InputConfig, addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = sock.set_recv_buffer_size(input.rcvbuf) {
        tracing::warn!(input = %input.name, error = %e, "cannot set SO_RCVBUF");
    }
    // Linux reports twice the usable size it granted.
    let granted = sock.recv_buffer_size().unwrap_or(0) / 2;
    if granted < input.rcvbuf {
        tracing::warn!(
            input = %input.name,
            requested = input.rcvbuf,
            granted,
            "kernel capped SO_RCVBUF (raise net.core.rmem_max, see systemd/99-downlink.conf); bursts may overflow"
        );
    }
    sock.bind(&addr.into())?;
    let sock: UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(sock)
}

/// The socket's kernel drop counter (`drops` column of /proc/net/udp{,6}, matched by inode).
fn kernel_drops(sock: &UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(format!("/proc/self/fd/{}", sock.as_raw_fd()))
        .ok()?
        .ino()
        .to_string();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).ok()?;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(9) == Some(&ino.as_str()) {
                return cols.last()?.parse().ok();
            }
        }
    }
    None
}

#[derive(Default)]
struct Batch {
    datagrams: u64,
    bytes: u64,
    not_allowed: u64,
    truncated: u64,
    empty: u64,
    queue_full: u64,
}

/// Receives until shutdown; drops are counted, never fatal.
pub fn udp_loop(
    input: &InputConfig,
    sock: &UdpSocket,
    tx: &SyncSender<Bytes>,
    shared: &Shared,
    idx: usize,
) {
    let mut buf = vec![0u8; input.max_datagram + 1];
    let mut batch = Batch::default();
    let mut last_flush = Instant::now();
    let kernel_base = kernel_drops(sock).unwrap_or(0);
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, peer)) => {
                batch.datagrams += 1;
                batch.bytes += n as u64;
                if !input.allows(peer.ip()) {
                    batch.not_allowed += 1;
                } else if n > input.max_datagram {
                    batch.truncated += 1;
                } else if n == 0 {
                    batch.empty += 1;
                } else {
                    let d = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    match tx.try_send(d) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => batch.queue_full += 1,
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                tracing::warn!(input = %input.name, error = %e, "receive error");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let stop = shared.stopping();
        if stop || batch.datagrams >= 4096 || last_flush.elapsed() >= Duration::from_millis(200) {
            let kernel = kernel_drops(sock).map(|k| k.saturating_sub(kernel_base));
            let b = std::mem::take(&mut batch);
            shared.with_input(idx, |s| {
                s.datagrams += b.datagrams;
                s.bytes += b.bytes;
                for (reason, n) in [
                    ("not_allowed", b.not_allowed),
                    ("truncated", b.truncated),
                    ("empty", b.empty),
                    ("queue_full", b.queue_full),
                ] {
                    *s.drops.entry(reason).or_default() += n;
                }
                if let Some(k) = kernel {
                    s.drops.insert("kernel_overflow", k);
                }
            });
            if b.queue_full > 0 {
                tracing::error!(input = %input.name, dropped = b.queue_full, "decoder queue full: datagrams dropped");
            }
            last_flush = Instant::now();
        }
        if stop {
            break;
        }
    }
}
