//! PNG plots of the results: lines on two axes, with a legend.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// One line of a plot.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// Fonts tried in order; plotters' pure-Rust rasteriser needs one file.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers the sans-serif font once; an error says which package has it.
fn register_font() -> anyhow::Result<()> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONTS
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or_else(|| "no DejaVuSans.ttf found (apt-get install fonts-dejavu-core)".to_owned())?;
            // The font lives as long as the process, as plotters requires.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "the font could not be read".to_owned())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Where a plot's legend goes: where its lines leave room.
pub(crate) use plotters::chart::SeriesLabelPosition as LegendAt;

/// Draws `series` to `path` (PNG, 900x560), the x axis logarithmic.
pub(crate) fn lines(
    path: &Path,
    (title, x_label, y_label): (&str, &str, &str),
    series: &[Series],
    legend: LegendAt,
) -> anyhow::Result<()> {
    register_font()?;
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let x_max = points().map(|p| p.0).fold(0.0, f64::max).max(1e-3) * 1.05;
    let x_min = points()
        .map(|p| p.0)
        .filter(|x| *x > 0.0)
        .fold(f64::MAX, f64::min)
        .min(x_max);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.1;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72);
    let colours = [
        RGBColor(200, 30, 30),
        BLUE,
        RGBColor(0, 140, 0),
        RGBColor(230, 140, 0),
        MAGENTA,
        BLACK,
    ];
    let mut chart = builder.build_cartesian_2d((x_min * 0.9..x_max).log_scale(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied().filter(|p| p.0 > 0.0),
                colour.stroke_width(2),
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(legend)
        .draw()?;
    root.present().context("writing the plot")?;
    Ok(())
}
