//! Figures, drawn with plotters: line plots (one line per series, e.g. accuracy over timesteps),
//! histograms (bars over bins, linear or log x) and heat maps (a labelled grid of cells on a
//! white-to-blue scale with a colour bar, e.g. a confusion matrix). Each figure has one drawing
//! function over any plotters backend, so the SVG the HTML pages show and the PNG written for
//! papers are the same picture. Text is laid out and rasterised from the bundled DejaVu Sans
//! (`fonts/`, Bitstream Vera licence) through plotters' ab_glyph backend: no system font, no
//! fontconfig.

use crate::io::write_atomic;
use crate::{Error, Result};
use image::{ImageFormat, Rgb, RgbImage};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle, FontTransform};
use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
/// Font sizes in pixels: titles, axis labels and legends, tick and cell labels.
const TITLE: f64 = 20.0;
const LABEL: f64 = 15.0;
const SMALL: f64 = 12.0;
const PAD: u32 = 10;

const INK: RGBColor = RGBColor(34, 34, 34);
const GRID: RGBColor = RGBColor(225, 225, 225);
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

fn rgb(c: Rgb<u8>) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

fn series_color(i: usize) -> RGBColor {
    rgb(PALETTE[i % PALETTE.len()])
}

/// Registers the bundled font with plotters (once).
fn font_ready() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    if *OK.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(Error::Internal("the bundled font src/analysis/fonts/DejaVuSans.ttf could not be parsed".into()))
    }
}

fn style(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font()).color(&INK)
}

/// Width and height of `text` in pixels at `size`.
fn text_size(text: &str, size: f64) -> (u32, u32) {
    (FAMILY, size).into_font().box_size(text).unwrap_or((0, size as u32))
}

/// The errors plotters' drawing returns.
type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_failed(title: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("figure `{title}`: drawing failed: {e}"))
}

/// A figure: its size, a check of its data, and its drawing on any backend; from these, its
/// SVG document, its image and its PNG file.
pub trait Figure: Sized {
    fn title(&self) -> &str;
    fn size(&self) -> (u32, u32);
    /// Errors on data the figure cannot draw (empty, non-finite, ragged).
    fn check(&self) -> Result<()>;
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;

    /// The figure as an SVG document (for inlining in HTML).
    fn svg(&self) -> Result<String> {
        font_ready()?;
        self.check()?;
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, self.size()).into_drawing_area();
            self.draw(&root).map_err(|e| draw_failed(self.title(), e))?;
            root.present().map_err(|e| draw_failed(self.title(), e))?;
        }
        Ok(out)
    }

    /// The figure as an RGB image.
    fn render(&self) -> Result<RgbImage> {
        font_ready()?;
        self.check()?;
        let (w, h) = self.size();
        let mut buf = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            self.draw(&root).map_err(|e| draw_failed(self.title(), e))?;
            root.present().map_err(|e| draw_failed(self.title(), e))?;
        }
        RgbImage::from_raw(w, h, buf).ok_or_else(|| draw_failed(self.title(), "buffer size"))
    }

    /// Writes the figure as a PNG file.
    fn save(&self, path: &Path) -> Result<()> {
        save_png(&self.render()?, path)
    }
}

/// Encodes `img` as PNG and writes it atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .map_err(|e| Error::Internal(format!("{}: PNG encoding failed: {e}", path.display())))?;
    write_atomic(path, &bytes)
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

/// An axis value as written: integers without decimals.
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// One axis of a chart: its range, its ticks (each labelled, with a grid line) and its title.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
    desc: String,
}

impl Axis {
    /// An axis over [lo, hi] with about `target` round ticks.
    fn linear(lo: f64, hi: f64, target: usize, desc: &str) -> Axis {
        let (ticks, step) = nice_ticks(lo, hi, target);
        Axis { lo, hi, ticks: ticks.into_iter().map(|v| (v, tick_label(v, step))).collect(), desc: desc.to_string() }
    }

    fn label(&self, v: f64) -> String {
        self.ticks.iter().find(|t| t.0 == v).map_or_else(String::new, |t| t.1.clone())
    }

    fn coord(&self) -> Ticked {
        Ticked { lo: self.lo, hi: self.hi, ticks: self.ticks.iter().map(|t| t.0).collect() }
    }
}

/// A linear f64 coordinate whose key points (tick marks, grid lines, labels) are exactly
/// `ticks` (plotters' own f64 range picks its own).
#[derive(Clone)]
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (t * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Ticked, Ticked>>;

/// A titled chart on `area` with axes x and y: tick labels, axis titles, a light grid.
fn chart<'a, DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, title: &str, x: &Axis, y: &Axis) -> std::result::Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let y_tick_w = y.ticks.iter().map(|t| text_size(&t.1, SMALL).0).max().unwrap_or(0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, style(TITLE))
        .margin(PAD)
        .x_label_area_size(2 * PAD + 2 * LABEL as u32)
        .y_label_area_size(2 * PAD + y_tick_w + LABEL as u32)
        .build_cartesian_2d(x.coord(), y.coord())?;
    chart
        .configure_mesh()
        .x_desc(&x.desc)
        .y_desc(&y.desc)
        .axis_desc_style(style(LABEL))
        .label_style(style(SMALL))
        .x_labels(x.ticks.len())
        .y_labels(y.ticks.len())
        .x_label_formatter(&|v| x.label(*v))
        .y_label_formatter(&|v| y.label(*v))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(INK)
        .draw()?;
    Ok(chart)
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
    /// A fixed y range (0..100 for accuracies); None fits the data with a margin.
    pub y_range: Option<(f64, f64)>,
    pub width: u32,
    pub height: u32,
}

/// The smallest figure that leaves room for the plot area.
const MIN_W: u32 = 240;
const MIN_H: u32 = 180;

impl LinePlot {
    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.series.iter().flat_map(|s| s.points.iter().copied())
    }

    /// The sorted distinct x values.
    fn xs(&self) -> Vec<f64> {
        let mut xs: Vec<f64> = self.points().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        xs
    }

    fn legend_width(&self) -> u32 {
        self.series.iter().map(|s| text_size(&s.name, LABEL).0).max().unwrap_or(0) + 40 + 2 * PAD
    }
}

impl Figure for LinePlot {
    fn title(&self) -> &str {
        &self.title
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::BadInput(format!("plot `{}`: {m}", self.title)));
        if self.points().next().is_none() {
            return bad("no points to draw".into());
        }
        if let Some(p) = self.points().find(|(x, y)| !x.is_finite() || !y.is_finite()) {
            return bad(format!("point {p:?} is not finite"));
        }
        let (w, h) = (MIN_W + self.legend_width(), MIN_H);
        if self.width < w || self.height < h {
            return bad(format!("{}x{} is too small for its labels (needs at least {w}x{h})", self.width, self.height));
        }
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (plot_area, legend) = root.split_horizontally(self.width - self.legend_width());
        let xs = self.xs();
        let xpos = |x: f64| if self.categorical_x { xs.iter().position(|&v| v == x).unwrap_or(0) as f64 } else { x };
        let (x_lo, x_hi) = if self.categorical_x {
            (-0.5, xs.len() as f64 - 0.5)
        } else {
            let (a, b) = (xs[0], xs[xs.len() - 1]);
            let m = if b > a { 0.03 * (b - a) } else { 1.0 };
            (a - m, b + m)
        };
        let (y_lo, y_hi) = self.y_range.unwrap_or_else(|| {
            let lo = self.points().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = self.points().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let m = if hi > lo { 0.05 * (hi - lo) } else { lo.abs().max(1.0) * 0.1 };
            (lo - m, hi + m)
        });
        let x = if self.categorical_x {
            Axis { lo: x_lo, hi: x_hi, ticks: xs.iter().enumerate().map(|(i, &v)| (i as f64, fmt_value(v))).collect(), desc: self.x_label.clone() }
        } else {
            Axis::linear(x_lo, x_hi, 6, &self.x_label)
        };
        let mut chart = chart(&plot_area, &self.title, &x, &Axis::linear(y_lo, y_hi, 5, &self.y_label))?;
        for (i, s) in self.series.iter().enumerate() {
            let c = series_color(i);
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (xpos(x), y)).collect();
            chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(3)))?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        }
        let top = (PAD as f64 + TITLE + 2.0 * PAD as f64) as i32;
        for (i, s) in self.series.iter().enumerate() {
            let c = series_color(i);
            let y = top + i as i32 * (LABEL as i32 + PAD as i32);
            legend.draw(&PathElement::new(vec![(PAD as i32, y), (PAD as i32 + 24, y)], c.stroke_width(3)))?;
            legend.draw(&Circle::new((PAD as i32 + 12, y), 4, c.filled()))?;
            legend.draw(&Text::new(s.name.clone(), (PAD as i32 + 32, y - LABEL as i32 / 2), style(LABEL)))?;
        }
        Ok(())
    }
}

/// A histogram: bars over bins, on a linear or log10 x axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// (lo, hi, count) per bin, ascending and not overlapping; lo > 0 on a log axis.
    pub bins: Vec<(f64, f64, u64)>,
    pub log_x: bool,
    pub width: u32,
    pub height: u32,
}

impl Histogram {
    /// The axis position of an x value.
    fn pos(&self, x: f64) -> f64 {
        if self.log_x {
            x.log10()
        } else {
            x
        }
    }
}

impl Figure for Histogram {
    fn title(&self) -> &str {
        &self.title
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::BadInput(format!("histogram `{}`: {m}", self.title)));
        if self.bins.is_empty() {
            return bad("no bins".into());
        }
        if let Some(b) = self.bins.iter().find(|b| !(b.0.is_finite() && b.1.is_finite() && b.0 < b.1) || (self.log_x && b.0 <= 0.0)) {
            return bad(format!("bin {b:?} is not a finite range{}", if self.log_x { " above 0" } else { "" }));
        }
        if self.width < MIN_W || self.height < MIN_H {
            return bad(format!("{}x{} is too small for its labels (needs at least {MIN_W}x{MIN_H})", self.width, self.height));
        }
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (x_lo, x_hi) = (self.pos(self.bins[0].0), self.pos(self.bins[self.bins.len() - 1].1));
        let y_hi = self.bins.iter().map(|b| b.2).max().unwrap_or(0).max(1) as f64 * 1.05;
        let x = if self.log_x {
            let ticks = (x_lo.ceil() as i64..=x_hi.floor() as i64).map(|k| (k as f64, fmt_value(10f64.powi(k as i32)))).collect();
            Axis { lo: x_lo, hi: x_hi, ticks, desc: self.x_label.clone() }
        } else {
            Axis::linear(x_lo, x_hi, 6, &self.x_label)
        };
        let mut chart = chart(root, &self.title, &x, &Axis::linear(0.0, y_hi, 5, &self.y_label))?;
        let c = series_color(0);
        let bars = self.bins.iter().filter(|b| b.2 > 0).map(|&(lo, hi, n)| [(self.pos(lo), 0.0), (self.pos(hi), n as f64)]);
        chart.draw_series(bars.clone().map(|r| Rectangle::new(r, c.filled())))?;
        // A white edge between neighbouring bars.
        chart.draw_series(bars.map(|r| Rectangle::new(r, WHITE.stroke_width(1))))?;
        Ok(())
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

const MISSING: Rgb<u8> = Rgb([190, 190, 190]);

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

/// Colour bar width.
const BAR_W: u32 = 16;

impl HeatMap {
    /// (left, top, right, bottom) margins around the cells.
    fn margins(&self) -> (u32, u32, u32, u32) {
        let row_w = self.row_labels.iter().map(|s| text_size(s, SMALL).0).max().unwrap_or(0);
        let col_h = self.col_labels.iter().map(|s| text_size(s, SMALL).0).max().unwrap_or(0);
        let left = PAD + LABEL as u32 + PAD + row_w + PAD;
        let top = PAD + TITLE as u32 + PAD;
        let bottom = PAD + col_h + PAD + LABEL as u32 + PAD;
        let right = PAD + BAR_W + PAD / 2 + text_size("1.0", SMALL).0 + PAD;
        (left, top, right, bottom)
    }

    /// The top-left pixel of the cells.
    pub fn origin(&self) -> (u32, u32) {
        let (l, t, _, _) = self.margins();
        (l, t)
    }
}

impl Figure for HeatMap {
    fn title(&self) -> &str {
        &self.title
    }

    /// Margins (title, labels, colour bar) plus cols x rows cells, at least as wide as the title.
    fn size(&self) -> (u32, u32) {
        let (l, t, r, b) = self.margins();
        let rows = self.values.len() as u32;
        let cols = self.values.first().map_or(0, |r| r.len()) as u32;
        let w = (l + cols * self.cell + r).max(text_size(&self.title, TITLE).0 + 2 * PAD);
        (w, t + rows * self.cell + b)
    }

    fn check(&self) -> Result<()> {
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
        Ok(())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (w, h) = self.size();
        let (left, top, _, _) = self.margins();
        let (gx, gy, cell) = (left as i32, top as i32, self.cell as i32);
        let (rows, cols) = (self.values.len() as i32, self.values[0].len() as i32);
        let (gw, gh) = (cols * cell, rows * cell);
        let centered = |size: f64| style(size).pos(Pos::new(HPos::Center, VPos::Center));
        for (r, row) in self.values.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let (x, y) = (gx + c as i32 * cell, gy + r as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], rgb(heat_color(v)).filled()))?;
                if let Some(text) = self.cell_text.get(r).and_then(|t| t.get(c)) {
                    let (tw, th) = text_size(text, SMALL);
                    if tw as i32 + 2 <= cell && th as i32 + 2 <= cell {
                        let ink = if v.is_nan() || v < 0.5 { INK } else { WHITE };
                        root.draw(&Text::new(text.clone(), (x + cell / 2, y + cell / 2), centered(SMALL).color(&ink)))?;
                    }
                }
            }
        }
        root.draw(&Rectangle::new([(gx - 1, gy - 1), (gx + gw, gy + gh)], INK))?;
        let right_mid = style(SMALL).pos(Pos::new(HPos::Right, VPos::Center));
        for (r, label) in self.row_labels.iter().enumerate() {
            root.draw(&Text::new(label.clone(), (gx - PAD as i32 / 2, gy + r as i32 * cell + cell / 2), right_mid.clone()))?;
        }
        let up = |size: f64| style(size).transform(FontTransform::Rotate270);
        for (c, label) in self.col_labels.iter().enumerate() {
            let tw = text_size(label, SMALL).0 as i32;
            let x = gx + c as i32 * cell + (cell - SMALL as i32) / 2;
            root.draw(&Text::new(label.clone(), (x, gy + gh + PAD as i32 / 2 + tw), up(SMALL)))?;
        }
        // Colour bar from 1 (top) to 0 (bottom), labelled at both ends and the middle.
        let bx = gx + gw + PAD as i32;
        for y in 0..gh {
            let color = rgb(heat_color(1.0 - y as f64 / (gh - 1).max(1) as f64));
            root.draw(&Rectangle::new([(bx, gy + y), (bx + BAR_W as i32, gy + y + 1)], color.filled()))?;
        }
        let left_mid = style(SMALL).pos(Pos::new(HPos::Left, VPos::Center));
        for (v, label) in [(1.0, "1.0"), (0.5, "0.5"), (0.0, "0.0")] {
            let y = gy + ((1.0 - v) * (gh - 1) as f64) as i32;
            root.draw(&Text::new(label, (bx + BAR_W as i32 + PAD as i32 / 2, y), left_mid.clone()))?;
        }
        // Title, axis labels.
        root.draw(&Text::new(self.title.clone(), (w as i32 / 2, PAD as i32), style(TITLE).pos(Pos::new(HPos::Center, VPos::Top))))?;
        root.draw(&Text::new(self.x_label.clone(), (gx + gw / 2, h as i32 - PAD as i32), style(LABEL).pos(Pos::new(HPos::Center, VPos::Bottom))))?;
        let yl = text_size(&self.y_label, LABEL).0 as i32;
        root.draw(&Text::new(self.y_label.clone(), (PAD as i32, gy + (gh + yl) / 2), up(LABEL)))?;
        Ok(())
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

    #[test]
    fn the_bundled_font_draws_text() {
        let hist = Histogram {
            title: "frequency".into(),
            x_label: "x".into(),
            y_label: "latents".into(),
            bins: vec![(0.001, 0.01, 3), (0.01, 0.1, 5), (0.1, 1.0, 1)],
            log_x: true,
            width: 400,
            height: 300,
        };
        let img = hist.render().unwrap();
        assert_eq!(img.dimensions(), (400, 300));
        // The title's glyphs are drawn in ink (anti-aliased shades included) in the top band.
        let inked = (0..400).flat_map(|x| (0..30).map(move |y| (x, y))).filter(|&(x, y)| img.get_pixel(x, y)[0] < 128).count();
        assert!(inked > 50, "{inked} dark pixels in the title band");
        let doc = hist.svg().unwrap();
        assert!(doc.starts_with("<svg") && doc.contains("\nfrequency\n</text>") && doc.contains("\n0.01\n</text>"), "{doc}");
    }
}
