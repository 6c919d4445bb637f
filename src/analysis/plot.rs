//! PNG figures drawn pixel by pixel with the `image` crate and the bitmap font of
//! [`super::font`]: line plots (axes, ticks at round numbers, grid, legend) and heat maps (a
//! labelled grid of cells on a white-to-blue scale with a colour bar, e.g. a confusion matrix).

use super::font::{draw_text, draw_text_up, text_height, text_width};
use crate::io::write_atomic;
use crate::{Error, Result};
use image::{ImageFormat, Rgb, RgbImage};
use std::io::Cursor;
use std::path::Path;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([34, 34, 34]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const MISSING: Rgb<u8> = Rgb([190, 190, 190]);
/// Series colours, in order (the usual ten-colour categorical palette).
pub const PALETTE: [Rgb<u8>; 10] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];
/// Text scale of titles, axis labels and tick labels in line plots.
const TEXT: u32 = 2;
const PAD: u32 = 10;

/// Encodes `img` as PNG and writes it atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .map_err(|e| Error::Internal(format!("{}: PNG encoding failed: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, w: i64, h: i64, c: Rgb<u8>) {
    for y in y0.max(0)..(y0 + h).min(img.height() as i64) {
        for x in x0.max(0)..(x0 + w).min(img.width() as i64) {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

fn fill_disc(img: &mut RgbImage, cx: f64, cy: f64, r: f64, c: Rgb<u8>) {
    let (x0, x1) = ((cx - r).floor() as i64, (cx + r).ceil() as i64);
    let (y0, y1) = ((cy - r).floor() as i64, (cy + r).ceil() as i64);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            if dx * dx + dy * dy <= r * r && x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
                img.put_pixel(x as u32, y as u32, c);
            }
        }
    }
}

/// A line `thickness` pixels wide from (x0, y0) to (x1, y1): discs stepped along it.
fn draw_line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), thickness: f64, c: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        fill_disc(img, x0 + t * (x1 - x0), y0 + t * (y1 - y0), thickness / 2.0, c);
    }
}

/// Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten, about
/// `target` of them. Returns (ticks, step).
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil();
    let last = (hi / step).floor();
    let ticks = (first as i64..=last as i64).map(|k| k as f64 * step).collect();
    (ticks, step)
}

/// A tick label with as many decimals as the step needs.
pub fn tick_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_string()
    } else {
        s
    }
}

/// One line of a plot, drawn with markers at its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// (x, y), drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// A line plot: one coloured line per series, round ticks, light grid, legend on the right.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Place the distinct x values at equal spacing, labelled with their values (timesteps 0,
    /// 25, 50, 100, 200, 500 read better so), instead of on a linear axis.
    pub categorical_x: bool,
    /// A fixed y range (0..1 for accuracies); None fits the data with a margin.
    pub y_range: Option<(f64, f64)>,
    pub width: u32,
    pub height: u32,
}

fn fmt_x(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl LinePlot {
    /// Draws the plot; errors on an empty plot, non-finite values, or a size too small for the
    /// margins.
    pub fn render(&self) -> Result<RgbImage> {
        let pts: Vec<(f64, f64)> = self.series.iter().flat_map(|s| s.points.iter().copied()).collect();
        if pts.is_empty() {
            return Err(Error::BadInput(format!("plot `{}`: no points to draw", self.title)));
        }
        if let Some(p) = pts.iter().find(|(x, y)| !x.is_finite() || !y.is_finite()) {
            return Err(Error::BadInput(format!("plot `{}`: point {p:?} is not finite", self.title)));
        }
        // x: a linear axis, or the sorted distinct values at positions 0, 1, 2...
        let mut xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let xpos = |x: f64| -> f64 {
            if self.categorical_x {
                xs.iter().position(|&v| v == x).unwrap_or(0) as f64
            } else {
                x
            }
        };
        let (x_lo, x_hi) = if self.categorical_x {
            (-0.5, xs.len() as f64 - 0.5)
        } else {
            let (a, b) = (xs[0], xs[xs.len() - 1]);
            let m = if b > a { 0.03 * (b - a) } else { 1.0 };
            (a - m, b + m)
        };
        let (y_lo, y_hi) = match self.y_range {
            Some(r) => r,
            None => {
                let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
                let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
                let m = if hi > lo { 0.05 * (hi - lo) } else { lo.abs().max(1.0) * 0.1 };
                (lo - m, hi + m)
            }
        };
        let (y_ticks, y_step) = nice_ticks(y_lo, y_hi, 5);
        let x_ticks: Vec<(f64, String)> = if self.categorical_x {
            xs.iter().enumerate().map(|(i, &v)| (i as f64, fmt_x(v))).collect()
        } else {
            let (t, s) = nice_ticks(x_lo, x_hi, 6);
            t.into_iter().map(|v| (v, tick_label(v, s))).collect()
        };

        let th = text_height(TEXT);
        let y_tick_w = y_ticks.iter().map(|&v| text_width(&tick_label(v, y_step), TEXT)).max().unwrap_or(0);
        let legend_w = self.series.iter().map(|s| text_width(&s.name, TEXT)).max().unwrap_or(0) + 30 + 2 * PAD;
        let left = PAD + th + PAD + y_tick_w + 6 + PAD;
        let right = legend_w + PAD;
        let top = PAD + th + 2 * PAD;
        let bottom = 6 + PAD + th + PAD + th + PAD;
        if self.width < left + right + 40 || self.height < top + bottom + 40 {
            return Err(Error::Internal(format!(
                "plot `{}`: {}x{} is too small for its labels (needs at least {}x{})",
                self.title,
                self.width,
                self.height,
                left + right + 40,
                top + bottom + 40
            )));
        }
        let (pw, ph) = ((self.width - left - right) as f64, (self.height - top - bottom) as f64);
        let px = |x: f64| left as f64 + (x - x_lo) / (x_hi - x_lo) * pw;
        let py = |y: f64| top as f64 + (1.0 - (y - y_lo) / (y_hi - y_lo)) * ph;

        let mut img = RgbImage::from_pixel(self.width, self.height, WHITE);
        // Grid and y ticks.
        for &v in &y_ticks {
            let y = py(v).round() as i64;
            fill_rect(&mut img, left as i64, y, pw as i64, 1, GRID);
            fill_rect(&mut img, left as i64 - 6, y, 6, 1, INK);
            let label = tick_label(v, y_step);
            let lx = left as i64 - 6 - PAD as i64 / 2 - text_width(&label, TEXT) as i64;
            draw_text(&mut img, lx, y - th as i64 / 2, &label, TEXT, INK);
        }
        for (v, label) in &x_ticks {
            let x = px(*v).round() as i64;
            fill_rect(&mut img, x, top as i64, 1, ph as i64, GRID);
            fill_rect(&mut img, x, (top as f64 + ph) as i64, 1, 6, INK);
            draw_text(&mut img, x - text_width(label, TEXT) as i64 / 2, (top as f64 + ph) as i64 + 6 + PAD as i64 / 2, label, TEXT, INK);
        }
        // Axes (left and bottom), lines, markers.
        fill_rect(&mut img, left as i64 - 1, top as i64, 2, ph as i64 + 1, INK);
        fill_rect(&mut img, left as i64 - 1, (top as f64 + ph) as i64, pw as i64 + 1, 2, INK);
        for (i, s) in self.series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let screen: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (px(xpos(x)), py(y))).collect();
            for w in screen.windows(2) {
                draw_line(&mut img, w[0], w[1], 2.5, c);
            }
            for &(x, y) in &screen {
                fill_disc(&mut img, x, y, 4.0, c);
            }
        }
        // Title, axis labels, legend.
        let w = self.width as i64;
        draw_text(&mut img, (w - text_width(&self.title, TEXT) as i64) / 2, PAD as i64, &self.title, TEXT, INK);
        let xl_y = self.height as i64 - PAD as i64 - th as i64;
        draw_text(&mut img, left as i64 + (pw as i64 - text_width(&self.x_label, TEXT) as i64) / 2, xl_y, &self.x_label, TEXT, INK);
        let yl_len = text_width(&self.y_label, TEXT) as i64;
        draw_text_up(&mut img, PAD as i64, top as i64 + (ph as i64 - yl_len) / 2, &self.y_label, TEXT, INK);
        let lx = (self.width - right + PAD) as i64;
        for (i, s) in self.series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let y = top as i64 + i as i64 * (th as i64 + PAD as i64);
            draw_line(&mut img, (lx as f64, (y + th as i64 / 2) as f64), ((lx + 20) as f64, (y + th as i64 / 2) as f64), 2.5, c);
            fill_disc(&mut img, (lx + 10) as f64, (y + th as i64 / 2) as f64, 4.0, c);
            draw_text(&mut img, lx + 28, y, &s.name, TEXT, INK);
        }
        Ok(img)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        save_png(&self.render()?, path)
    }
}

/// A heat map: rows x cols cells coloured by value on a white-to-blue scale over [0, 1] (NaN
/// in gray), row labels on the left, column labels written upwards below, a colour bar.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    pub title: String,
    /// Under the column labels (a confusion matrix: "predicted").
    pub x_label: String,
    /// Left of the row labels (a confusion matrix: "true").
    pub y_label: String,
    /// [rows][cols], each in [0, 1] (clamped) or NaN.
    pub values: Vec<Vec<f64>>,
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    /// Text in each cell ([rows][cols], e.g. counts), drawn where it fits; empty for none.
    pub cell_text: Vec<Vec<String>>,
    /// Cell size in pixels.
    pub cell: u32,
}

/// The heat-map scale: white at 0, mid blue at 0.5, dark blue at 1.
pub fn heat_color(v: f64) -> Rgb<u8> {
    if v.is_nan() {
        return MISSING;
    }
    let stops = [(0.0, [247.0, 251.0, 255.0]), (0.5, [107.0, 174.0, 214.0]), (1.0, [8.0, 48.0, 107.0])];
    let v = v.clamp(0.0, 1.0);
    let (a, b) = if v <= 0.5 { (stops[0], stops[1]) } else { (stops[1], stops[2]) };
    let t = (v - a.0) / (b.0 - a.0);
    let mix = |i: usize| (a.1[i] + t * (b.1[i] - a.1[i])).round() as u8;
    Rgb([mix(0), mix(1), mix(2)])
}

/// Colour bar width, and the text scale of heat-map cell and axis labels.
const BAR_W: u32 = 16;
const LABEL: u32 = 1;

impl HeatMap {
    fn margins(&self) -> (u32, u32, u32, u32) {
        let row_w = self.row_labels.iter().map(|s| text_width(s, LABEL)).max().unwrap_or(0);
        let col_h = self.col_labels.iter().map(|s| text_width(s, LABEL)).max().unwrap_or(0);
        let left = PAD + text_height(TEXT) + PAD + row_w + PAD;
        let top = PAD + text_height(TEXT) + PAD;
        let bottom = PAD + col_h + PAD + text_height(TEXT) + PAD;
        let right = PAD + BAR_W + PAD / 2 + text_width("1.0", LABEL) + PAD;
        (left, top, right, bottom)
    }

    /// The image size: margins (title, labels, colour bar) plus cols x rows cells, at least as
    /// wide as the title.
    pub fn size(&self) -> (u32, u32) {
        let (l, t, r, b) = self.margins();
        let rows = self.values.len() as u32;
        let cols = self.values.first().map_or(0, |r| r.len()) as u32;
        let w = (l + cols * self.cell + r).max(text_width(&self.title, TEXT) + 2 * PAD);
        (w, t + rows * self.cell + b)
    }

    /// Draws the map; errors on ragged rows or label counts that do not match.
    pub fn render(&self) -> Result<RgbImage> {
        let rows = self.values.len();
        let cols = self.values.first().map_or(0, |r| r.len());
        let bad = |m: String| Err(Error::BadInput(format!("heat map `{}`: {m}", self.title)));
        if rows == 0 || cols == 0 || self.values.iter().any(|r| r.len() != cols) {
            return bad(format!("values must be a non-empty rectangle, got {rows} rows"));
        }
        if self.row_labels.len() != rows || self.col_labels.len() != cols {
            return bad(format!("{} row and {} column labels for {rows} x {cols} cells", self.row_labels.len(), self.col_labels.len()));
        }
        if !self.cell_text.is_empty() && (self.cell_text.len() != rows || self.cell_text.iter().any(|r| r.len() != cols)) {
            return bad(format!("cell text must be empty or {rows} x {cols}"));
        }
        if self.cell == 0 {
            return bad("cell size 0".into());
        }
        let (w, h) = self.size();
        let (left, top, _, _) = self.margins();
        let cell = self.cell as i64;
        let (gx, gy) = (left as i64, top as i64);
        let lh = text_height(LABEL) as i64;
        let mut img = RgbImage::from_pixel(w, h, WHITE);
        for (r, row) in self.values.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let (x, y) = (gx + c as i64 * cell, gy + r as i64 * cell);
                let color = heat_color(v);
                fill_rect(&mut img, x, y, cell, cell, color);
                if let Some(text) = self.cell_text.get(r).and_then(|t| t.get(c)) {
                    let tw = text_width(text, LABEL) as i64;
                    if tw + 2 <= cell && lh + 2 <= cell {
                        let ink = if v.is_nan() || v < 0.5 { INK } else { WHITE };
                        draw_text(&mut img, x + (cell - tw) / 2, y + (cell - lh) / 2, text, LABEL, ink);
                    }
                }
            }
        }
        let (gw, gh) = (cols as i64 * cell, rows as i64 * cell);
        // Frame, row labels (right-aligned), column labels (upwards, below the grid).
        fill_rect(&mut img, gx - 1, gy - 1, gw + 2, 1, INK);
        fill_rect(&mut img, gx - 1, gy + gh, gw + 2, 1, INK);
        fill_rect(&mut img, gx - 1, gy - 1, 1, gh + 2, INK);
        fill_rect(&mut img, gx + gw, gy - 1, 1, gh + 2, INK);
        for (r, label) in self.row_labels.iter().enumerate() {
            let x = gx - PAD as i64 / 2 - text_width(label, LABEL) as i64;
            draw_text(&mut img, x, gy + r as i64 * cell + (cell - lh) / 2, label, LABEL, INK);
        }
        for (c, label) in self.col_labels.iter().enumerate() {
            draw_text_up(&mut img, gx + c as i64 * cell + (cell - lh) / 2, gy + gh + PAD as i64 / 2, label, LABEL, INK);
        }
        // Colour bar from 1 (top) to 0 (bottom), labelled at both ends and the middle.
        let bx = gx + gw + PAD as i64;
        for y in 0..gh {
            fill_rect(&mut img, bx, gy + y, BAR_W as i64, 1, heat_color(1.0 - y as f64 / (gh - 1).max(1) as f64));
        }
        for (v, label) in [(1.0, "1.0"), (0.5, "0.5"), (0.0, "0.0")] {
            let y = gy + ((1.0 - v) * (gh - 1) as f64) as i64 - lh / 2;
            draw_text(&mut img, bx + BAR_W as i64 + PAD as i64 / 2, y.clamp(gy, gy + gh - lh), label, LABEL, INK);
        }
        // Title, axis labels.
        draw_text(&mut img, (w as i64 - text_width(&self.title, TEXT) as i64) / 2, PAD as i64, &self.title, TEXT, INK);
        let th = text_height(TEXT) as i64;
        let xl = text_width(&self.x_label, TEXT) as i64;
        draw_text(&mut img, gx + (gw - xl) / 2, h as i64 - PAD as i64 - th, &self.x_label, TEXT, INK);
        let yl = text_width(&self.y_label, TEXT) as i64;
        draw_text_up(&mut img, PAD as i64, gy + (gh - yl) / 2, &self.y_label, TEXT, INK);
        Ok(img)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        save_png(&self.render()?, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let (t, s) = nice_ticks(0.0, 1.0, 5);
        assert_eq!(s, 0.2);
        assert_eq!(t.len(), 6);
        assert_eq!(tick_label(t[3], s), "0.6");
        let (t, s) = nice_ticks(-3.0, 47.0, 5);
        assert_eq!(s, 10.0);
        assert_eq!(t, vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(tick_label(-0.0001, 0.1), "0.0");
    }

    #[test]
    fn heat_colors_run_white_to_blue() {
        assert_eq!(heat_color(0.0), Rgb([247, 251, 255]));
        assert_eq!(heat_color(1.0), Rgb([8, 48, 107]));
        assert_eq!(heat_color(2.0), heat_color(1.0));
        assert_eq!(heat_color(f64::NAN), MISSING);
    }
}
