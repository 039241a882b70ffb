//! Datagram ingest: one blocking receive thread per input, never blocked by the decoder.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};

use super::events::{
    emit, DatagramsDropped, DatagramsReceived, InputReconnecting, ReconnectCause,
    TcpSenderConnected, TcpSenderDisconnected, TcpSenderRefused,
};
use super::{DropReason, Worker};
use crate::config::InputConfig;

/// A bound input socket.
#[derive(Debug)]
pub enum Source {
    /// Datagram input, and the value of its kernel drop counter already counted.
    Udp(UdpSocket, u64),
    /// Stream input (one connection at a time), and the connection in progress, if any.
    Tcp(TcpListener, Option<TcpStream>),
    /// Client of a remote TCP server (`host:port`), and the connection in progress, if any.
    TcpConnect(String, Option<TcpStream>),
}

impl Source {
    /// Address actually bound.
    pub fn local_addr(&self) -> Option<String> {
        match self {
            Source::Udp(s, _) => s.local_addr().ok().map(|a| a.to_string()),
            Source::Tcp(l, _) => l.local_addr().ok().map(|a| a.to_string()),
            Source::TcpConnect(t, _) => Some(format!("-> {t}")),
        }
    }
}

/// Runs the input's receive loop until its worker is asked to stop; returns the socket (and a
/// TCP connection in progress), so that a reload that keeps the address hands them to the next
/// worker: the port is never unbound and a sender's connection is not cut.
pub fn run(
    input: &InputConfig,
    source: Source,
    tx: &SyncSender<Bytes>,
    w: &Worker,
) -> Option<Source> {
    match source {
        Source::Udp(sock, seen) => {
            let seen = udp_loop(input, &sock, seen, tx, w);
            Some(Source::Udp(sock, seen))
        }
        Source::Tcp(l, conn) => {
            let conn = tcp_loop(input, &l, conn, tx, w);
            Some(Source::Tcp(l, conn))
        }
        Source::TcpConnect(t, conn) => {
            let conn = tcp_connect_loop(input, &t, conn, tx, w);
            Some(Source::TcpConnect(t, conn))
        }
    }
}

/// A receive timeout (the loops wake up to check for shutdown), not an error.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Binds a TCP listener (non-blocking accept, polled so shutdown is prompt).
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// How reading one TCP connection ended.
enum Streamed {
    /// The peer closed it, or it failed: accept or connect the next one.
    Ended,
    /// The decoder side is gone.
    DecoderGone,
    /// The worker is handing over: the connection goes to the next worker, unread data and all.
    HandedOver(TcpStream),
}

/// TCP input: one sender at a time, its byte stream is the input. The queue applies
/// backpressure (a full queue blocks the reader, TCP slows the sender): nothing is dropped.
/// Connections from outside the allow-list are closed and counted as `not_allowed`. Returns
/// the connection in progress when the worker hands over.
fn tcp_loop(
    input: &InputConfig,
    listener: &TcpListener,
    mut carried: Option<TcpStream>,
    tx: &SyncSender<Bytes>,
    w: &Worker,
) -> Option<TcpStream> {
    while !w.stopping() || carried.is_some() {
        w.input.beat(0);
        let mut stream = match carried.take() {
            Some(s) => s,
            None => match listener.accept() {
                Ok((stream, peer)) => {
                    if !input.allows(peer.ip()) {
                        emit(TcpSenderRefused {
                            input: &w.input,
                            name: &input.name,
                            peer,
                        });
                        continue;
                    }
                    emit(TcpSenderConnected {
                        name: &input.name,
                        peer,
                    });
                    stream
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::warn!(input = %input.name, error = %e, "accept failed");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        match read_stream(input, &mut stream, tx, w) {
            Streamed::Ended => emit(TcpSenderDisconnected { name: &input.name }),
            Streamed::DecoderGone => return None,
            Streamed::HandedOver(s) => return Some(s),
        }
    }
    None
}

/// Reads one TCP connection into the queue (blocking `send`: backpressure, no drops) until it
/// ends or the worker stops. On a handover the connection is returned unread; when the input
/// closes, what the connection still holds is read first (until it has been quiet for 100 ms,
/// 2 s at most).
fn read_stream(
    input: &InputConfig,
    stream: &mut TcpStream,
    tx: &SyncSender<Bytes>,
    w: &Worker,
) -> Streamed {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .is_err()
    {
        return Streamed::Ended;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let (mut chunks, mut bytes) = (0u64, 0u64);
    let mut last_flush = Instant::now();
    let mut drain_until: Option<Instant> = None;
    let flush = |chunks: &mut u64, bytes: &mut u64| {
        emit(DatagramsReceived {
            input: &w.input,
            name: &input.name,
            count: std::mem::take(chunks),
            bytes: std::mem::take(bytes),
        });
    };
    let end = loop {
        w.input.beat(0);
        if drain_until.is_none() && w.stopping() {
            if !w.must_drain() {
                flush(&mut chunks, &mut bytes);
                return match stream.try_clone() {
                    Ok(s) => Streamed::HandedOver(s),
                    Err(_) => Streamed::Ended,
                };
            }
            drain_until = Some(Instant::now() + Duration::from_secs(2));
        }
        if drain_until.is_some_and(|t| Instant::now() >= t) {
            break Streamed::Ended;
        }
        match stream.read(&mut buf) {
            Ok(0) => break Streamed::Ended,
            Ok(n) => {
                chunks += 1;
                bytes += n as u64;
                if tx
                    .send(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()))
                    .is_err()
                {
                    break Streamed::DecoderGone;
                }
            }
            // Quiet: while draining, nothing more is coming.
            Err(e) if is_timeout(&e) => {
                if drain_until.is_some() {
                    break Streamed::Ended;
                }
            }
            Err(e) => {
                tracing::warn!(input = %input.name, error = %e, "TCP read failed");
                break Streamed::Ended;
            }
        }
        if last_flush.elapsed() >= Duration::from_millis(200) {
            flush(&mut chunks, &mut bytes);
            last_flush = Instant::now();
        }
    };
    flush(&mut chunks, &mut bytes);
    end
}

/// `tcp-connect://HOST:PORT`: connects to the demodulator's TCP server and reconnects every
/// `input.reconnect` when it is down or the connection ends. Returns the connection in
/// progress when the worker hands over.
fn tcp_connect_loop(
    input: &InputConfig,
    target: &str,
    mut carried: Option<TcpStream>,
    tx: &SyncSender<Bytes>,
    w: &Worker,
) -> Option<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut failures = 0u64;
    while !w.stopping() || carried.is_some() {
        w.input.beat(0);
        let conn = carried.take().or_else(|| {
            let addrs: Vec<SocketAddr> = target
                .to_socket_addrs()
                .map(Iterator::collect)
                .unwrap_or_default();
            let c = addrs
                .iter()
                .find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).ok());
            if c.is_some() {
                tracing::info!(input = %input.name, %target, "connected");
            }
            c
        });
        match conn {
            Some(mut stream) => {
                failures = 0;
                match read_stream(input, &mut stream, tx, w) {
                    Streamed::Ended => {}
                    Streamed::DecoderGone => return None,
                    Streamed::HandedOver(s) => return Some(s),
                }
            }
            None => failures += 1,
        }
        let cause = match failures {
            0 => ReconnectCause::Ended,
            attempts => ReconnectCause::ConnectFailed { attempts },
        };
        emit(InputReconnecting {
            input: &w.input,
            name: &input.name,
            target,
            cause,
        });
        // Sleep in short steps so shutdown stays prompt.
        let until = Instant::now() + input.reconnect;
        while Instant::now() < until && !w.stopping() {
            w.input.beat(0);
            std::thread::sleep(Duration::from_millis(20).min(input.reconnect));
        }
    }
    None
}

/// Sockets handed over by systemd (`LISTEN_FDS`, `LISTEN_FDNAMES`), taken once per process and
/// kept so that a SIGHUP reload can reuse them.
fn systemd_sockets() -> &'static std::sync::Mutex<Vec<(String, socket2::Socket)>> {
    static SOCKETS: std::sync::OnceLock<std::sync::Mutex<Vec<(String, socket2::Socket)>>> =
        std::sync::OnceLock::new();
    SOCKETS.get_or_init(|| {
        let mut out = Vec::new();
        let pid_ok = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            == Some(std::process::id());
        let n: i32 = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if pid_ok && n > 0 {
            let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
            let names: Vec<&str> = names.split(':').collect();
            for i in 0..n.min(64) {
                let fd = 3 + i;
                // SAFETY: systemd passes fds 3..3+LISTEN_FDS to this process (LISTEN_PID checked)
                // and nothing else in the process has taken ownership of them; each is taken once
                // (OnceLock).
                #[allow(unsafe_code)]
                let owned =
                    unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                let name = names
                    .get(i as usize)
                    .copied()
                    .unwrap_or("unknown")
                    .to_owned();
                out.push((name, socket2::Socket::from(owned)));
            }
        }
        std::sync::Mutex::new(out)
    })
}

/// The socket systemd passed under `FileDescriptorName=name`, as a UDP socket or TCP listener.
pub fn take_systemd(input: &InputConfig, name: &str) -> std::io::Result<Source> {
    let list = systemd_sockets()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((_, sock)) = list.iter().find(|(n, _)| n == name) else {
        let have: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("systemd passed no socket named {name:?} (have {have:?}; set FileDescriptorName= in the .socket unit)"),
        ));
    };
    let sock = sock.try_clone()?;
    if sock.r#type()? == Type::DGRAM {
        if let Err(e) = sock.set_recv_buffer_size(input.rcvbuf) {
            tracing::warn!(input = %input.name, error = %e, "cannot set SO_RCVBUF");
        }
        let udp: UdpSocket = sock.into();
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let seen = kernel_drops(&udp).unwrap_or(0);
        Ok(Source::Udp(udp, seen))
    } else {
        let l: TcpListener = sock.into();
        l.set_nonblocking(true)?;
        Ok(Source::Tcp(l, None))
    }
}

/// Asks for `input.rcvbuf` as the socket's receive buffer; warns when the kernel caps it.
pub fn apply_rcvbuf(input: &InputConfig, sock: &socket2::SockRef<'_>) {
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
}

/// Binds a UDP socket with the configured receive buffer; warns when the kernel caps it.
pub fn bind_udp(input: &InputConfig, addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    apply_rcvbuf(input, &socket2::SockRef::from(&sock));
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

/// Receives until the worker stops; drops are counted, never fatal. On stop, what the socket
/// already holds is taken (bounded in time) before returning, so a socket about to close loses
/// nothing it accepted and one handed to the next worker has little to carry. Returns the
/// kernel drop counter value counted so far.
fn udp_loop(
    input: &InputConfig,
    sock: &UdpSocket,
    mut kernel_seen: u64,
    tx: &SyncSender<Bytes>,
    w: &Worker,
) -> u64 {
    let mut buf = vec![0u8; input.max_datagram + 1];
    let mut batch = Batch::default();
    let mut last_flush = Instant::now();
    // Set once stop is seen: the drain deadline.
    let mut draining: Option<Instant> = None;
    loop {
        w.input.beat(0);
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
                    let sent = if draining.is_some() {
                        // The decoder is still running: wait for it rather than drop.
                        tx.send(d).map_err(|_| TrySendError::Disconnected(()))
                    } else {
                        tx.try_send(d).map_err(|e| match e {
                            TrySendError::Full(_) => TrySendError::Full(()),
                            TrySendError::Disconnected(_) => TrySendError::Disconnected(()),
                        })
                    };
                    match sent {
                        Ok(()) => {}
                        Err(TrySendError::Full(())) => batch.queue_full += 1,
                        Err(TrySendError::Disconnected(())) => break,
                    }
                }
            }
            // Empty socket: while draining, done.
            Err(e) if is_timeout(&e) => {
                if draining.is_some() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(input = %input.name, error = %e, "receive error");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if draining.is_none() && w.stopping() {
            if !w.must_drain() {
                // Handed over: the next worker reads on from the same socket.
                break;
            }
            draining = Some(Instant::now() + Duration::from_secs(2));
            if let Err(e) = sock.set_read_timeout(Some(Duration::from_millis(1))) {
                tracing::warn!(input = %input.name, error = %e, "cannot shorten the receive timeout to drain");
            }
        }
        let timed_out = draining.is_some_and(|t| Instant::now() >= t);
        if timed_out
            || batch.datagrams >= 4096
            || last_flush.elapsed() >= Duration::from_millis(200)
        {
            flush_batch(input, sock, &mut kernel_seen, &mut batch, w);
            last_flush = Instant::now();
        }
        if timed_out {
            break;
        }
    }
    flush_batch(input, sock, &mut kernel_seen, &mut batch, w);
    if let Err(e) = sock.set_read_timeout(Some(Duration::from_millis(100))) {
        tracing::warn!(input = %input.name, error = %e, "cannot restore the receive timeout");
    }
    kernel_seen
}

/// Adds a batch of counts (and the kernel's drops since the last look) to the input's status.
fn flush_batch(
    input: &InputConfig,
    sock: &UdpSocket,
    kernel_seen: &mut u64,
    batch: &mut Batch,
    w: &Worker,
) {
    let kernel = kernel_drops(sock).map_or(0, |k| {
        let new = k.saturating_sub(*kernel_seen);
        *kernel_seen = (*kernel_seen).max(k);
        new
    });
    let b = std::mem::take(batch);
    let (input, name) = (&w.input, input.name.as_str());
    // Received first: a reader never sees more dropped than received.
    let (count, bytes) = (b.datagrams, b.bytes);
    emit(DatagramsReceived {
        input,
        name,
        count,
        bytes,
    });
    for (reason, count) in [
        (DropReason::NotAllowed, b.not_allowed),
        (DropReason::Truncated, b.truncated),
        (DropReason::Empty, b.empty),
        (DropReason::QueueFull, b.queue_full),
        (DropReason::KernelOverflow, kernel),
    ] {
        emit(DatagramsDropped {
            input,
            name,
            reason,
            count,
        });
    }
}
