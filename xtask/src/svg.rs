//! A benchmark run as a bar chart: a standalone SVG file, written by hand.
//!
//! `cargo xtask bench --svg PATH` calls [`bench_chart`], which turns a
//! [`Report`] into a [`Chart`] (one group of bars per test, one bar per
//! (path, mode) series of the switching and migrating paths, the whole-call
//! median in instructions as its height, and the floors as dashed reference
//! lines) and [`render`]s it. The figures span three decades or more (a
//! merged null call of a few dozen instructions, a switching 32 KiB copy of
//! thousands), so the vertical axis is logarithmic, over whole decades, with
//! a labelled gridline at every power of ten. Each bar carries its value; a
//! figure that was not reported gets no bar, only a small `—`.
//!
//! The XML is written with `write!`, not a crate: the chart needs rectangles,
//! lines and text, and every piece of text passes through [`escape`]. The
//! output depends only on the chart (fixed layout, fixed colours, one
//! decimal for every coordinate), so the same run gives the same bytes.
//!
//! A run that includes the macro benchmark `build` gets a second chart
//! below the first ([`build_chart_of`], [`stack`]): a group per measure,
//! a bar per configuration.
//!
//! What it leaves out: interactivity beyond a tooltip per bar, the kernel
//! scope and the minima (the tables have them), and any choice of style.

use std::fmt::Write as _;

use crate::Board;
use crate::report::{self as bench, Report};

/// One series of bars: a label and one value per group, `None` where the
/// figure was not reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Shown in the legend.
    pub label: String,
    /// One per group, in group order.
    pub values: Vec<Option<u64>>,
}

/// A dashed horizontal line across the plot, labelled at its right end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The label beside the line.
    pub label: String,
    /// Where the line is.
    pub value: u64,
}

/// A grouped bar chart on a logarithmic axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// The first line at the top.
    pub title: String,
    /// What the values are, under the title.
    pub axis: String,
    /// The group labels, left to right.
    pub groups: Vec<String>,
    /// The series, one bar each per group.
    pub series: Vec<Series>,
    /// Reference lines.
    pub references: Vec<Reference>,
}

/// A logarithmic vertical scale over whole decades: `10^low` at `bottom`,
/// `10^high` at `top` (SVG coordinates, so `top < bottom`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogScale {
    low: u32,
    high: u32,
    top: f64,
    bottom: f64,
}

/// The exponent of the largest power of ten at most `value` (0 for 0).
fn floor_log10(value: u64) -> u32 {
    value.max(1).ilog10()
}

/// The exponent of the smallest power of ten at least `value` (0 for 0).
fn ceil_log10(value: u64) -> u32 {
    let exponent = floor_log10(value);
    if 10u64.pow(exponent) >= value { exponent } else { exponent + 1 }
}

impl LogScale {
    /// The smallest whole-decade scale showing every one of `values`
    /// (at least one decade; values below 1 sit on 1).
    pub fn covering(values: &[u64], top: f64, bottom: f64) -> Self {
        let low = values.iter().map(|v| floor_log10(*v)).min().unwrap_or(0);
        let high = values.iter().map(|v| ceil_log10(*v)).max().unwrap_or(1).max(low + 1);
        Self { low, high, top, bottom }
    }

    /// The vertical coordinate of `value` (clamped to the scale).
    pub fn y(&self, value: u64) -> f64 {
        self.y_of_log((value.max(1) as f64).log10())
    }

    /// The vertical coordinate of `10^exponent` (clamped to the scale).
    fn y_of_log(&self, exponent: f64) -> f64 {
        let position = (exponent - f64::from(self.low)) / f64::from(self.high - self.low);
        self.bottom - position.clamp(0.0, 1.0) * (self.bottom - self.top)
    }

    /// The powers of ten from bottom to top, where the gridlines go.
    pub fn decades(&self) -> Vec<u128> {
        (self.low..=self.high).map(|e| 10u128.pow(e)).collect()
    }
}

/// `text` with the five XML special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The series colours, reused in order.
const COLOURS: [&str; 8] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f"];
const LEFT: f64 = 80.0;
const TOP: f64 = 60.0;
const PLOT_H: f64 = 320.0;
const RIGHT: f64 = 200.0;
const BAR_W: f64 = 34.0;
const BAR_GAP: f64 = 4.0;
const GROUP_PAD: f64 = 28.0;
const LEGEND_TOP: f64 = 40.0;
const LEGEND_ROW: f64 = 18.0;
const MIN_WIDTH: f64 = 640.0;
/// The least vertical distance between two reference labels.
const LABEL_GAP: f64 = 13.0;

/// Where everything goes.
struct Layout {
    width: f64,
    height: f64,
    plot_right: f64,
    bottom: f64,
    group_w: f64,
    scale: LogScale,
}

impl Layout {
    fn of(chart: &Chart) -> Self {
        let bars = chart.series.len().max(1) as f64;
        let group_w = bars * (BAR_W + BAR_GAP) - BAR_GAP + GROUP_PAD;
        let plot_right = LEFT + chart.groups.len().max(1) as f64 * group_w;
        let bottom = TOP + PLOT_H;
        let mut values: Vec<u64> = chart.series.iter().flat_map(|s| s.values.iter().flatten().copied()).collect();
        values.extend(chart.references.iter().map(|r| r.value));
        Self {
            width: (plot_right + RIGHT).max(MIN_WIDTH),
            height: bottom + LEGEND_TOP + chart.series.len() as f64 * LEGEND_ROW + 12.0,
            plot_right,
            bottom,
            group_w,
            scale: LogScale::covering(&values, TOP, bottom),
        }
    }

    /// The left edge of series `s`'s bar in group `g`.
    fn bar_x(&self, g: usize, s: usize) -> f64 {
        LEFT + g as f64 * self.group_w + GROUP_PAD / 2.0 + s as f64 * (BAR_W + BAR_GAP)
    }
}

/// The opening tag, the title and the axis description.
fn header(out: &mut String, layout: &Layout, chart: &Chart) {
    let (w, h) = (layout.width, layout.height);
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.1}\" height=\"{h:.1}\" viewBox=\"0 0 {w:.1} {h:.1}\" \
         font-family=\"sans-serif\" font-size=\"11\" style=\"background:#fff\">"
    );
    let title = escape(&chart.title);
    let _ = writeln!(out, "<title>{title}</title>");
    let _ = writeln!(out, "<text x=\"{LEFT:.1}\" y=\"24.0\" font-size=\"14\" font-weight=\"bold\">{title}</text>");
    let _ = writeln!(out, "<text x=\"{LEFT:.1}\" y=\"42.0\" fill=\"#444\">{}</text>", escape(&chart.axis));
}

/// A gridline and a label at every decade, and the two axes.
fn grid(out: &mut String, layout: &Layout) {
    let scale = &layout.scale;
    for (exponent, decade) in (scale.low..=scale.high).zip(scale.decades()) {
        let y = scale.y_of_log(f64::from(exponent));
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
            layout.plot_right
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#444\">{decade}</text>",
            LEFT - 6.0,
            y + 4.0
        );
    }
    let b = layout.bottom;
    let _ = writeln!(out, "<line x1=\"{LEFT:.1}\" y1=\"{TOP:.1}\" x2=\"{LEFT:.1}\" y2=\"{b:.1}\" stroke=\"#000\"/>");
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT:.1}\" y1=\"{b:.1}\" x2=\"{:.1}\" y2=\"{b:.1}\" stroke=\"#000\"/>",
        layout.plot_right
    );
}

/// The bars with their values, `—` for missing figures, and the group
/// labels.
fn bars(out: &mut String, layout: &Layout, chart: &Chart) {
    for (g, group) in chart.groups.iter().enumerate() {
        for (s, series) in chart.series.iter().enumerate() {
            let x = layout.bar_x(g, s);
            let centre = x + BAR_W / 2.0;
            match series.values.get(g).copied().flatten() {
                Some(value) => {
                    let y = layout.scale.y(value);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BAR_W:.1}\" height=\"{:.1}\" fill=\"{}\">\
                         <title>{}, {}: {value}</title></rect>",
                        layout.bottom - y,
                        COLOURS[s % COLOURS.len()],
                        escape(&series.label),
                        escape(group)
                    );
                    let _ = writeln!(
                        out,
                        "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{value}</text>",
                        y - 4.0
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#999\">—</text>",
                        layout.bottom - 4.0
                    );
                }
            }
        }
        let centre = LEFT + (g as f64 + 0.5) * layout.group_w;
        let _ = writeln!(
            out,
            "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            layout.bottom + 18.0,
            escape(group)
        );
    }
}

/// The reference lines, labelled at the right, labels kept apart.
fn references(out: &mut String, layout: &Layout, chart: &Chart) {
    let mut lines: Vec<&Reference> = chart.references.iter().collect();
    // Top to bottom (largest first), so each label can be pushed below the
    // one above it; ties keep the chart's order.
    lines.sort_by_key(|r| std::cmp::Reverse(r.value));
    let mut previous: Option<f64> = None;
    for reference in lines {
        let y = layout.scale.y(reference.value);
        let label_y = previous.map_or(y + 4.0, |p| (y + 4.0).max(p + LABEL_GAP));
        previous = Some(label_y);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#555\" \
             stroke-dasharray=\"6 4\"/>",
            layout.plot_right
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{label_y:.1}\" fill=\"#555\">{}</text>",
            layout.plot_right + 6.0,
            escape(&reference.label)
        );
    }
}

/// A swatch and a label per series, below the plot.
fn legend(out: &mut String, layout: &Layout, chart: &Chart) {
    for (s, series) in chart.series.iter().enumerate() {
        let y = layout.bottom + LEGEND_TOP + s as f64 * LEGEND_ROW;
        let _ = writeln!(
            out,
            "<rect x=\"{LEFT:.1}\" y=\"{y:.1}\" width=\"12.0\" height=\"12.0\" fill=\"{}\"/>",
            COLOURS[s % COLOURS.len()]
        );
        let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", LEFT + 18.0, y + 10.0, escape(&series.label));
    }
}

/// The chart as a standalone SVG document (ending in a newline).
pub fn render(chart: &Chart) -> String {
    let layout = Layout::of(chart);
    let mut out = String::new();
    header(&mut out, &layout, chart);
    grid(&mut out, &layout);
    if chart.series.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#999\">no figures reported</text>",
            (LEFT + layout.plot_right) / 2.0,
            TOP + PLOT_H / 2.0
        );
    }
    bars(&mut out, &layout, chart);
    references(&mut out, &layout, chart);
    legend(&mut out, &layout, chart);
    out.push_str("</svg>\n");
    out
}

/// The whole-call median of (path, mode, test) if reported in instructions.
fn whole(report: &Report, path: &str, mode: &str, test: &str) -> Option<u64> {
    report.get(path, mode, test, "whole").filter(|m| m.unit == "instructions").map(|m| m.median)
}

/// The chart of a run: the compared series of [`bench::COLUMNS`] first, then
/// any other non-floor (path, mode) in the kernel's order, each only if it
/// has a whole-call figure; the floors' Null whole-call figures as
/// reference lines.
pub fn chart_of(report: &Report, board: Board) -> Chart {
    let mut pairs: Vec<(&str, &str)> = bench::COLUMNS.iter().map(|c| (c.0, c.1)).collect();
    let all = report.series();
    for pair in all.iter().copied().filter(|s| !bench::FLOORS.contains(&s.0)) {
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    let series = pairs
        .into_iter()
        .map(|(path, mode)| Series {
            label: format!("{path}: {}", bench::mode_text(mode)),
            values: bench::TESTS.iter().map(|t| whole(report, path, mode, t.0)).collect(),
        })
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect();
    let mut floors: Vec<(&str, &str)> = all.into_iter().filter(|s| bench::FLOORS.contains(&s.0)).collect();
    floors.sort_by_key(|s| bench::FLOORS.iter().position(|f| *f == s.0));
    let references = floors
        .into_iter()
        .filter_map(|(path, mode)| {
            let value = whole(report, path, mode, "null")?;
            let label =
                if mode == bench::PROTECTED { format!("{path} {value}") } else { format!("{path} ({mode}) {value}") };
            Some(Reference { label, value })
        })
        .collect();
    let b = &report.begin;
    Chart {
        title: format!("Tern benchmark: board {board} (kernel says {}), boot {}", b.board, b.boot_id),
        axis: "whole call (EL0+EL1), median instructions retired, logarithmic scale; dashed: floors".to_string(),
        groups: bench::TESTS.iter().map(|t| t.1.to_string()).collect(),
        series,
        references,
    }
}

/// The macro benchmark's chart: one group per measure (instructions,
/// timer ticks, payload copies, RPCs), one bar per configuration; `None`
/// if the run did not include it.
pub fn build_chart_of(report: &Report, board: Board) -> Option<Chart> {
    let first = report.builds.first()?;
    let series = bench::BUILD_CONFIGS
        .iter()
        .filter_map(|(config, text)| {
            let b = report.build(config)?;
            Some(Series {
                label: format!("{config}: {text}"),
                values: vec![Some(b.instructions), Some(b.ticks), Some(b.copies), Some(b.calls())],
            })
        })
        .collect();
    Some(Chart {
        title: format!("Macro benchmark `build`: {} files, board {board}, boot {}", first.files, report.begin.boot_id),
        axis: "the driver's build step, logarithmic scale".to_string(),
        groups: ["instructions", "timer ticks", "payload copies", "RPCs"].iter().map(|g| g.to_string()).collect(),
        series,
        references: Vec::new(),
    })
}

/// Charts one above the other in one SVG document: each rendered as by
/// [`render`], nested at its offset.
pub fn stack(charts: &[Chart]) -> String {
    let layouts: Vec<Layout> = charts.iter().map(Layout::of).collect();
    let width = layouts.iter().map(|l| l.width).fold(0.0, f64::max);
    let height: f64 = layouts.iter().map(|l| l.height).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.1}\" height=\"{height:.1}\" \
         viewBox=\"0 0 {width:.1} {height:.1}\" style=\"background:#fff\">"
    );
    let mut y = 0.0;
    for (chart, layout) in charts.iter().zip(&layouts) {
        let _ = writeln!(out, "<g transform=\"translate(0,{y:.1})\">");
        out.push_str(&render(chart));
        out.push_str("</g>\n");
        y += layout.height;
    }
    out.push_str("</svg>\n");
    out
}

/// The SVG chart of a run on `board`: the paths' chart, and below it the
/// macro benchmark's when the run has one.
pub fn bench_chart(report: &Report, board: Board) -> String {
    match build_chart_of(report, board) {
        Some(build) => stack(&[chart_of(report, board), build]),
        None => render(&chart_of(report, board)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::good;

    #[test]
    fn log_scale_is_monotone_over_whole_decades() {
        let scale = LogScale::covering(&[20, 20000], 0.0, 400.0);
        assert_eq!(scale.decades(), [10, 100, 1000, 10000, 100000]);
        assert_eq!(scale.y(10), 400.0);
        assert_eq!(scale.y(100_000), 0.0);
        assert_eq!(scale.y(1000), 200.0);
        let mut previous = scale.y(10);
        for value in (11..=100_000).step_by(7) {
            let y = scale.y(value);
            assert!(y < previous, "y({value}) = {y} is not above {previous}");
            previous = y;
        }
        // Exact powers of ten do not widen the range; zero sits on 1.
        assert_eq!(LogScale::covering(&[100, 1000], 0.0, 1.0).decades(), [100, 1000]);
        assert_eq!(LogScale::covering(&[0, 9], 0.0, 1.0).decades(), [1, 10]);
        assert_eq!(LogScale::covering(&[7, 7], 0.0, 1.0).decades(), [1, 10]);
        assert_eq!(LogScale::covering(&[], 0.0, 1.0).decades(), [1, 10]);
        assert_eq!(LogScale::covering(&[u64::MAX], 0.0, 1.0).decades().last(), Some(&10u128.pow(20)));
    }

    #[test]
    fn escapes_text() {
        assert_eq!(escape(r#"a<b & "c" 'd'>"#), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
        let chart = Chart {
            title: "x<script>&".into(),
            axis: "a\"b".into(),
            groups: vec!["<g>".into()],
            series: vec![Series { label: "s&t".into(), values: vec![Some(5)] }],
            references: vec![Reference { label: "r<1>".into(), value: 3 }],
        };
        let svg = render(&chart);
        assert!(!svg.contains("<script") && !svg.contains("<g>") && !svg.contains("r<1>"), "{svg}");
        for needle in ["x&lt;script&gt;&amp;", "a&quot;b", "&lt;g&gt;", "s&amp;t", "r&lt;1&gt;"] {
            assert!(svg.contains(needle), "{needle} missing from\n{svg}");
        }
    }

    /// The document is one element per line between `<svg ...>` and
    /// `</svg>`, each closed on its own line.
    fn assert_well_formed(svg: &str) {
        let lines: Vec<&str> = svg.lines().collect();
        assert!(lines[0].starts_with("<svg ") && lines[0].ends_with('>'), "{}", lines[0]);
        assert_eq!(lines.last(), Some(&"</svg>"));
        for line in &lines[1..lines.len() - 1] {
            let name = line.strip_prefix('<').and_then(|l| l.split([' ', '>']).next()).unwrap_or("");
            assert!(!name.is_empty(), "{line}");
            assert!(line.ends_with("/>") || line.ends_with(&format!("</{name}>")), "{line}");
            assert_eq!(line.matches('<').count(), line.matches('>').count(), "{line}");
        }
    }

    #[test]
    fn charts_a_run() {
        let svg = bench_chart(&good(), Board::Virt);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.ends_with("</svg>\n"), "{svg}");
        assert_well_formed(&svg);
        // 9 whole-call figures in instructions outside the floors, 5 series.
        assert_eq!(svg.matches("<rect").count(), 9 + 5, "{svg}");
        // 5 series × 5 tests, less the 9 figures.
        assert_eq!(svg.matches(">—</text>").count(), 25 - 9, "{svg}");
        for needle in [
            "board virt (kernel says qemu-virt), boot 1f2e3d4c",
            ">switching: protected client → protected server</text>",
            ">migrating-merged: merged client → merged server</text>",
            ">migrating-odd: protected client → protected server</text>",
            ">600</text>",
            ">86</text>",
            ">0</text>",
            ">32K Lent</text>",
            ">floor-call 12</text>",
            ">floor-svc 9</text>",
            ">1000</text>",
        ] {
            assert!(svg.contains(needle), "{needle:?} missing from\n{svg}");
        }
        // The floors with a whole-call Null figure, and only those.
        assert_eq!(svg.matches("stroke-dasharray").count(), 2, "{svg}");
        assert!(!svg.contains("floor-entry"), "{svg}");
        // Same input, same bytes.
        assert_eq!(svg, bench_chart(&good(), Board::Virt));
    }

    #[test]
    fn one_rect_per_present_figure() {
        let chart = Chart {
            title: "t".into(),
            axis: "a".into(),
            groups: vec!["one".into(), "two".into(), "three".into()],
            series: vec![
                Series { label: "a".into(), values: vec![Some(20), None, Some(20000)] },
                Series { label: "b".into(), values: vec![None, None, Some(300)] },
            ],
            references: Vec::new(),
        };
        let svg = render(&chart);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<rect").count(), 3 + 2, "{svg}");
        assert_eq!(svg.matches(">—</text>").count(), 3, "{svg}");
        assert!(!svg.contains("stroke-dasharray"), "{svg}");
        // Taller bars for larger values.
        let height = |value: u64| {
            let tip = format!("{value}</title>");
            let rect = svg.lines().find(|l| l.contains(&tip)).unwrap();
            let at = rect.find("height=\"").unwrap() + 8;
            rect[at..].split('"').next().unwrap().parse::<f64>().unwrap()
        };
        assert!(height(20) < height(300) && height(300) < height(20000), "{svg}");

        let empty = render(&Chart { series: Vec::new(), ..chart });
        assert_eq!(empty.matches("<rect").count(), 0, "{empty}");
        assert!(empty.contains("no figures reported") && empty.ends_with("</svg>\n"), "{empty}");
    }

    #[test]
    fn a_run_with_builds_gets_a_second_chart() {
        let report = crate::report::parse(&crate::bench::tests::with_builds()).unwrap();
        let build = build_chart_of(&report, Board::Virt).unwrap();
        assert_eq!(build.groups.len(), 4);
        assert_eq!(build.series.len(), 4);
        assert_eq!(build.series[3].values, [Some(3000), Some(1000), Some(50), Some(100)]);
        let svg = bench_chart(&report, Board::Virt);
        assert_eq!(svg.matches("<svg ").count(), 3, "an outer document and two charts");
        assert!(svg.contains("Macro benchmark `build`: 200 files"));
        assert!(build_chart_of(&good(), Board::Virt).is_none());
        assert_eq!(bench_chart(&good(), Board::Virt).matches("<svg ").count(), 1);
    }
}
