//! A bounded in-memory cache of encoded tiles, so a map panning over the same area or many
//! clients on one scene do not re-render. Eviction is CLOCK (second chance): the oldest entry
//! goes first unless it was read since it last came round, then it is moved to the back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use raster::tiles::render::Encoded;

/// Byte-bounded tile cache.
#[derive(Debug)]
pub struct TileCache {
    inner: Mutex<Inner>,
    max_bytes: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, (Encoded, bool)>,
    order: VecDeque<String>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

fn size(e: &Encoded) -> usize {
    match e {
        Encoded::Empty => 64,
        Encoded::Image { bytes, .. } => bytes.len() + 64,
    }
}

impl TileCache {
    /// A cache holding at most `max_bytes` of tiles.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_bytes: std::sync::atomic::AtomicUsize::new(max_bytes),
        }
    }

    /// A new byte budget (`http.tile_cache` on reload); a smaller one evicts at the next insert.
    pub fn set_capacity(&self, max_bytes: usize) {
        self.max_bytes
            .store(max_bytes, std::sync::atomic::Ordering::Relaxed);
        if max_bytes == 0 {
            let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            g.map.clear();
            g.order.clear();
            g.bytes = 0;
        }
    }

    /// A cached tile.
    pub fn get(&self, key: &str) -> Option<Encoded> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = g.map.get_mut(key).map(|(e, used)| {
            *used = true;
            e.clone()
        });
        if hit.is_some() {
            g.hits += 1;
        } else {
            g.misses += 1;
        }
        hit
    }

    /// Stores a tile, evicting the oldest entries beyond the byte budget.
    pub fn put(&self, key: String, tile: Encoded) {
        let n = size(&tile);
        let max = self.max_bytes.load(std::sync::atomic::Ordering::Relaxed);
        if n > max {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match g.map.insert(key.clone(), (tile, false)) {
            Some((old, _)) => g.bytes = g.bytes.saturating_sub(size(&old)),
            None => g.order.push_back(key.clone()),
        }
        let newest = key;
        g.bytes += n;
        // Ends: every pass over the queue clears the read marks it meets, and the new entry is
        // passed over only while others remain.
        while g.bytes > max {
            let Some(k) = g.order.pop_front() else { break };
            let keep = (k == newest && !g.order.is_empty())
                || g.map
                    .get_mut(&k)
                    .is_some_and(|(_, used)| std::mem::take(used));
            if keep {
                g.order.push_back(k);
            } else if let Some((old, _)) = g.map.remove(&k) {
                g.bytes = g.bytes.saturating_sub(size(&old));
            }
        }
    }

    /// (entries, bytes, hits, misses).
    pub fn stats(&self) -> (usize, usize, u64, u64) {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (g.map.len(), g.bytes, g.hits, g.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(n: usize) -> Encoded {
        Encoded::Image {
            bytes: vec![0; n],
            content_type: "image/png",
        }
    }

    #[test]
    fn bounded_by_bytes_oldest_unread_out_first() {
        let c = TileCache::new(1000);
        c.put("a".into(), img(400));
        c.put("b".into(), img(400));
        assert!(c.get("a").is_some());
        c.put("c".into(), img(400));
        assert!(c.get("b").is_none(), "a was read, so b (unread) goes");
        assert!(c.get("a").is_some() && c.get("c").is_some());
        // a and c were both read: the sweep clears their marks and evicts one of them; the new
        // d is never the one to go.
        c.put("d".into(), img(400));
        assert!(c.get("d").is_some(), "a new entry is never the one evicted");
        let (n, bytes, hits, misses) = c.stats();
        assert_eq!(n, 2);
        assert_eq!((hits, misses), (4, 1));
        assert!(bytes <= 1000);
        c.put("huge".into(), img(5000));
        assert!(c.get("huge").is_none());
        c.put("b".into(), img(10));
        assert!(c.stats().0 <= 3);
        assert!(c.stats().1 <= 1000);
    }

    #[test]
    fn zero_bytes_turns_it_off() {
        let c = TileCache::new(0);
        c.put("a".into(), img(1));
        assert!(c.get("a").is_none());
        assert_eq!(c.stats().0, 0);
    }
}
