//! 8-connected components of the detected pixels, labelled in the same blocked pass that
//! detects them (one row at a time, top to bottom): a union-find over provisional labels that
//! also carries each component's statistics, so areas, the MMU and the per-alert figures come
//! out of that pass without a second look at the pixels.
//!
//! Memory is one `u32` per provisional label plus one [`Acc`] per provisional label (merged
//! into the root on union) and two label rows; nothing grows with the grid's size except
//! through the number of components.

/// Statistics of one component (valid at its root).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Acc {
    /// Pixels.
    pub(crate) n: u64,
    /// Pixels confirmed by a later look.
    pub(crate) high: u64,
    /// Pixels contradicted by a later look.
    pub(crate) contra: u64,
    /// Sum of ΔNDVI at first detection.
    pub(crate) sum_d: f64,
    /// Sum of baseline NDVI.
    pub(crate) sum_base: f64,
    /// Approximate equal-area size, m² (per-pixel areas; for the MMU pre-filter only).
    pub(crate) area_m2: f64,
    /// Earliest first-detection scene index.
    pub(crate) first: u16,
    /// Latest observation scene index.
    pub(crate) last: u16,
}

impl Acc {
    fn merge(&mut self, o: &Acc) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        self.n += o.n;
        self.high += o.high;
        self.contra += o.contra;
        self.sum_d += o.sum_d;
        self.sum_base += o.sum_base;
        self.area_m2 += o.area_m2;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }
}

/// One detected pixel's contribution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pixel {
    /// 1 low, 2 high (confirmed), 3 contradicted.
    pub(crate) code: u8,
    /// ΔNDVI at first detection.
    pub(crate) dfirst: f32,
    /// Baseline NDVI (frozen at first detection).
    pub(crate) base: f32,
    /// First-detection scene index.
    pub(crate) first: u16,
    /// Last observation scene index.
    pub(crate) last: u16,
    /// Approximate equal-area pixel size, m².
    pub(crate) area_m2: f64,
}

/// Largest provisional label (labels are stored as `label << 2 | code` in a `u32`).
pub(crate) const MAX_LABEL: u32 = (1 << 30) - 1;

/// Streaming 8-connected labelling with a union-find over provisional labels.
#[derive(Debug)]
pub(crate) struct Labeller {
    /// Parent of each provisional label; index 0 is unused (background).
    parent: Vec<u32>,
    /// Statistics, meaningful at roots.
    acc: Vec<Acc>,
    /// Labels of the previous row (0 = background).
    prev: Vec<u32>,
    /// Labels of the current row.
    cur: Vec<u32>,
}

/// Too many provisional labels for the `u32` label raster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyLabels;

impl Labeller {
    pub(crate) fn new(width: usize) -> Self {
        Self {
            parent: vec![0],
            acc: vec![Acc::default()],
            prev: vec![0; width],
            cur: vec![0; width],
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        // Path halving.
        loop {
            let p = self.parent[x as usize];
            if p == x {
                return x;
            }
            let gp = self.parent[p as usize];
            self.parent[x as usize] = gp;
            x = gp;
        }
    }

    /// Joins the components of `a` and `b`; the smaller root label becomes the root.
    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[child as usize] = root;
        let c = std::mem::take(&mut self.acc[child as usize]);
        self.acc[root as usize].merge(&c);
        root
    }

    fn fresh(&mut self) -> Result<u32, TooManyLabels> {
        let l = u32::try_from(self.parent.len()).map_err(|_| TooManyLabels)?;
        if l > MAX_LABEL {
            return Err(TooManyLabels);
        }
        self.parent.push(l);
        self.acc.push(Acc::default());
        Ok(l)
    }

    /// Labels one row (the next below the previous call's). `px(c)` is the detected pixel at
    /// column `c`, or `None`. Returns the row's provisional labels (0 = background).
    pub(crate) fn row(
        &mut self,
        mut px: impl FnMut(usize) -> Option<Pixel>,
    ) -> Result<&[u32], TooManyLabels> {
        std::mem::swap(&mut self.prev, &mut self.cur);
        let width = self.cur.len();
        for c in 0..width {
            let Some(p) = px(c) else {
                self.cur[c] = 0;
                continue;
            };
            let n = self.prev[c];
            let label = if n != 0 {
                // N touches NW, NE and W (all its 8-neighbours): already joined.
                n
            } else {
                let w = if c > 0 { self.cur[c - 1] } else { 0 };
                let nw = if c > 0 { self.prev[c - 1] } else { 0 };
                let ne = if c + 1 < width { self.prev[c + 1] } else { 0 };
                // W and NW touch each other: either stands for both.
                let left = if w != 0 { w } else { nw };
                match (left, ne) {
                    (0, 0) => self.fresh()?,
                    (l, 0) => l,
                    (0, r) => r,
                    (l, r) => self.union(l, r),
                }
            };
            self.cur[c] = label;
            let root = self.find(label);
            let a = &mut self.acc[root as usize];
            if a.n == 0 {
                a.first = p.first;
                a.last = p.last;
            }
            a.n += 1;
            a.sum_d += f64::from(p.dfirst);
            a.sum_base += f64::from(p.base);
            a.area_m2 += p.area_m2;
            a.first = a.first.min(p.first);
            a.last = a.last.max(p.last);
            match p.code {
                2 => a.high += 1,
                3 => a.contra += 1,
                _ => {}
            }
        }
        Ok(&self.cur)
    }

    /// Ends the labelling: each provisional label's component as a dense number (roots in
    /// label order, from 0; index 0 of the map is unused) and the statistics of each
    /// component in that order.
    pub(crate) fn finish(mut self) -> (Vec<u32>, Vec<Acc>) {
        // A label's parent is never larger than the label (union makes the smaller root the
        // root; path halving only moves a link closer to the root), so one ascending sweep
        // sees every parent already rewritten to its component number.
        let mut comps = Vec::new();
        for l in 1..self.parent.len() {
            let p = self.parent[l] as usize;
            if p == l {
                self.parent[l] = comps.len() as u32;
                comps.push(std::mem::take(&mut self.acc[l]));
            } else {
                self.parent[l] = self.parent[p];
            }
        }
        drop(self.acc);
        (self.parent, comps)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Reference: flood fill (8-connected), component sizes sorted.
    fn flood(grid: &[Vec<bool>]) -> Vec<u64> {
        let (h, w) = (grid.len(), grid[0].len());
        let mut seen = vec![vec![false; w]; h];
        let mut sizes = Vec::new();
        for r in 0..h {
            for c in 0..w {
                if !grid[r][c] || seen[r][c] {
                    continue;
                }
                let mut n = 0;
                let mut stack = vec![(r, c)];
                seen[r][c] = true;
                while let Some((y, x)) = stack.pop() {
                    n += 1;
                    for dy in -1i64..=1 {
                        for dx in -1i64..=1 {
                            let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                            if yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
                                continue;
                            }
                            let (yy, xx) = (yy as usize, xx as usize);
                            if grid[yy][xx] && !seen[yy][xx] {
                                seen[yy][xx] = true;
                                stack.push((yy, xx));
                            }
                        }
                    }
                }
                sizes.push(n);
            }
        }
        sizes.sort_unstable();
        sizes
    }

    fn px(code: u8, first: u16) -> Pixel {
        Pixel {
            code,
            dfirst: -0.5,
            base: 0.75,
            first,
            last: first + 1,
            area_m2: 100.0,
        }
    }

    #[test]
    fn labels_match_a_flood_fill_on_random_grids() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for density in [10u64, 35, 50, 65, 90] {
            for _ in 0..20 {
                let (h, w) = (1 + (rnd() % 40) as usize, 1 + (rnd() % 40) as usize);
                let grid: Vec<Vec<bool>> = (0..h)
                    .map(|_| (0..w).map(|_| rnd() % 100 < density).collect())
                    .collect();
                let mut l = Labeller::new(w);
                let mut labels = Vec::new();
                for row in &grid {
                    let got = l.row(|c| row[c].then(|| px(1, 3))).unwrap();
                    labels.push(got.to_vec());
                }
                let (map, comps) = l.finish();
                let mut sizes: Vec<u64> = comps.iter().map(|a| a.n).collect();
                sizes.sort_unstable();
                assert_eq!(sizes, flood(&grid), "{h}×{w} at {density} %");
                // Every detected pixel maps to a component whose figures add up.
                let total: u64 = comps.iter().map(|a| a.n).sum();
                for (r, row) in labels.iter().enumerate() {
                    for (c, &lab) in row.iter().enumerate() {
                        assert_eq!(lab != 0, grid[r][c]);
                        if lab != 0 {
                            assert!((map[lab as usize] as usize) < comps.len());
                        }
                    }
                }
                for a in &comps {
                    assert_eq!(a.area_m2, 100.0 * a.n as f64);
                    assert_eq!(a.sum_d, -0.5 * a.n as f64);
                    assert_eq!((a.first, a.last), (3, 4));
                }
                assert_eq!(total, grid.iter().flatten().filter(|&&d| d).count() as u64);
            }
        }
    }

    #[test]
    fn a_u_shape_joins_at_the_bottom_and_diagonals_connect() {
        // Two arms that meet only in the last row, and a pixel touching only diagonally.
        let rows = [
            "X.X...X", //
            "X.X..X.", //
            "XXX....", //
        ];
        let mut l = Labeller::new(7);
        for (r, row) in rows.iter().enumerate() {
            let b = row.as_bytes();
            l.row(|c| (b[c] == b'X').then(|| px(if r == 0 { 2 } else { 3 }, r as u16)))
                .unwrap();
        }
        let (_, comps) = l.finish();
        assert_eq!(comps.len(), 2);
        let u = comps.iter().find(|a| a.n == 7).unwrap();
        assert_eq!((u.high, u.contra, u.first, u.last), (2, 5, 0, 3));
        let d = comps.iter().find(|a| a.n == 2).unwrap();
        assert_eq!((d.first, d.last), (0, 2));
    }
}
