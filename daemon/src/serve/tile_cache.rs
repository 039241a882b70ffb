//! A bounded in-memory cache of encoded tiles (least recently inserted out first), so a map
//! panning over the same area or many clients on one scene do not re-render.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use storage::tiles::render::Encoded;

/// Byte-bounded tile cache.
#[derive(Debug)]
pub struct TileCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Encoded>,
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
            max_bytes,
        }
    }

    /// A cached tile.
    pub fn get(&self, key: &str) -> Option<Encoded> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = g.map.get(key).cloned();
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
        if n > self.max_bytes {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = g.map.insert(key.clone(), tile) {
            g.bytes = g.bytes.saturating_sub(size(&old));
        } else {
            g.order.push_back(key);
        }
        g.bytes += n;
        while g.bytes > self.max_bytes {
            let Some(k) = g.order.pop_front() else { break };
            if let Some(old) = g.map.remove(&k) {
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
    fn bounded_by_bytes_oldest_out_first() {
        let c = TileCache::new(1000);
        c.put("a".into(), img(400));
        c.put("b".into(), img(400));
        assert!(c.get("a").is_some());
        c.put("c".into(), img(400));
        assert!(c.get("a").is_none(), "oldest evicted");
        assert!(c.get("b").is_some() && c.get("c").is_some());
        let (n, bytes, hits, misses) = c.stats();
        assert_eq!((n, hits, misses), (2, 3, 1));
        assert!(bytes <= 1000);
        c.put("huge".into(), img(5000));
        assert!(c.get("huge").is_none());
        c.put("b".into(), img(10));
        assert_eq!(c.stats().0, 2);
    }
}
