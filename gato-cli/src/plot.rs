//! Loss curves drawn to a PNG with plotters: the training loss per step and each task's validation loss, on a
//! log-scaled loss axis. Text is set in DejaVu Sans, embedded (the `dejavu` crate), so nothing depends on the
//! fonts of the machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{CliError, Result};

/// A point `(step, loss)`.
pub type Point = (f64, f64);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF shipped by the crate; an error would only leave the plot without text.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Argument {
        flag: "out",
        detail: format!("cannot draw {}: {e}", path.display()),
    }
}

/// Draw `train` (training loss per step) and `validation` (per task) to `path`, 960×540.
pub fn loss_curves(
    path: &Path,
    train: &[Point],
    validation: &BTreeMap<String, Vec<Point>>,
) -> Result<()> {
    register_font();
    let (w, h) = (960u32, 540u32);
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let all = train
            .iter()
            .chain(validation.values().flatten())
            .filter(|p| p.1.is_finite() && p.1 > 0.0);
        let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, 0.0f64);
        for &(x, y) in all {
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        if !y_min.is_finite() {
            (y_min, y_max) = (0.01, 10.0);
        }
        let (y_lo, y_hi) = (y_min * 0.8, y_max * 1.25);
        let mut chart = ChartBuilder::on(&root)
            .caption("gato train: loss (nats per target)", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, (y_lo..y_hi).log_scale())
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        let finite = |pts: &[Point]| -> Vec<Point> {
            pts.iter()
                .copied()
                .filter(|p| p.1.is_finite() && p.1 > 0.0)
                .collect()
        };
        chart
            .draw_series(LineSeries::new(finite(train), BLUE.mix(0.6)))
            .map_err(|e| plot_err(path, e))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        let colours = [RED, GREEN, MAGENTA, CYAN, BLACK, YELLOW];
        for (i, (task, pts)) in validation.iter().enumerate() {
            let c = colours[i % colours.len()];
            let pts = finite(pts);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| plot_err(path, e))?
                .label(format!("validation: {task}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|e| plot_err(path, e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    let tmp = path.with_extension("png.tmp");
    image::save_buffer_with_format(
        &tmp,
        &pixels,
        w,
        h,
        image::ColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| plot_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| plot_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_curves() {
        let dir = std::env::temp_dir().join(format!("gato-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loss.png");
        let train: Vec<Point> = (1..=50).map(|s| (s as f64, 10.0 / s as f64)).collect();
        let mut val = BTreeMap::new();
        val.insert("CartPole-v1".to_string(), vec![(10.0, 2.0), (50.0, 0.5)]);
        loss_curves(&path, &train, &val).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (960, 540));
        // Some pixels are the train curve's blue, some the validation curve's red: the curves were drawn.
        let blueish = img.pixels().filter(|p| p[2] > 150 && p[0] < 150).count();
        let red = img
            .pixels()
            .filter(|p| p[0] > 200 && p[1] < 60 && p[2] < 60)
            .count();
        assert!(blueish > 100 && red > 50, "blue {blueish}, red {red}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
