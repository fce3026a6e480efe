//! Learning curves drawn to a PNG with plotters: the training loss per step and each task's validation loss, on a
//! log-scaled loss axis, beside each task's held-out action accuracy. Text is set in DejaVu Sans, embedded (the `dejavu` crate), so nothing depends on the
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

/// What `gato train` plots, gathered from its `metrics.jsonl` records.
#[derive(Debug, Default, Clone)]
pub struct Curves {
    /// Training loss per step.
    pub train: Vec<Point>,
    /// Validation loss per task.
    pub validation: BTreeMap<String, Vec<Point>>,
    /// Held-out action-token accuracy per task.
    pub accuracy: BTreeMap<String, Vec<Point>>,
}

impl Curves {
    /// Take in one `metrics.jsonl` record (`step` and `validation` events; others are ignored).
    pub fn remember(&mut self, v: &serde_json::Value) {
        let step = v["step"].as_f64().unwrap_or(0.0);
        let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        match v["event"].as_str() {
            Some("step") => self.train.push((step, num("loss"))),
            Some("validation") => {
                let task = v["task"].as_str().unwrap_or("?").to_string();
                self.validation
                    .entry(task.clone())
                    .or_default()
                    .push((step, num("loss")));
                self.accuracy
                    .entry(task)
                    .or_default()
                    .push((step, num("action_accuracy")));
            }
            _ => {}
        }
    }

    /// The curves of a `metrics.jsonl` text (lines that are not JSON records are skipped).
    pub fn from_jsonl(text: &str) -> Self {
        let mut c = Curves::default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .for_each(|v| c.remember(&v));
        c
    }
}

const COLOURS: [RGBColor; 6] = [RED, GREEN, MAGENTA, CYAN, BLACK, YELLOW];

fn finite(pts: &[Point]) -> Vec<Point> {
    pts.iter().copied().filter(|p| p.1.is_finite()).collect()
}

/// Draw `curves` to `path`, 1440×540: on the left the training loss per step and each task's validation loss
/// (log scale), on the right each task's held-out action-token accuracy.
pub fn loss_curves(path: &Path, curves: &Curves) -> Result<()> {
    register_font();
    let (w, h) = (1440u32, 540u32);
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let (left, right) = root.split_horizontally(900);
        let all = curves
            .train
            .iter()
            .chain(curves.validation.values().flatten())
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
        let mut chart = ChartBuilder::on(&left)
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
        let positive = |pts: &[Point]| -> Vec<Point> {
            finite(pts).into_iter().filter(|p| p.1 > 0.0).collect()
        };
        chart
            .draw_series(LineSeries::new(positive(&curves.train), BLUE.mix(0.6)))
            .map_err(|e| plot_err(path, e))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        for (i, (task, pts)) in curves.validation.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            let pts = positive(pts);
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
        let mut acc = ChartBuilder::on(&right)
            .caption("held-out action accuracy", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..x_max, 0f64..1f64)
            .map_err(|e| plot_err(path, e))?;
        acc.configure_mesh()
            .x_desc("step")
            .y_desc("accuracy")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        for (i, pts) in curves.accuracy.values().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            let pts = finite(pts);
            acc.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| plot_err(path, e))?;
            acc.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|e| plot_err(path, e))?;
        }
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
        let mut text: String = (1..=50)
            .map(|s| {
                format!(
                    "{{\"event\":\"step\",\"step\":{s},\"loss\":{}}}\n",
                    10.0 / s as f64
                )
            })
            .collect();
        for (s, loss, acc) in [(10, 2.0, 0.4), (50, 0.5, 0.9)] {
            text += &format!(
                "{{\"event\":\"validation\",\"step\":{s},\"task\":\"CartPole-v1\",\"loss\":{loss},\"action_accuracy\":{acc}}}\n"
            );
        }
        text += "not json\n";
        let curves = Curves::from_jsonl(&text);
        assert_eq!(curves.train.len(), 50);
        assert_eq!(
            curves.accuracy["CartPole-v1"],
            vec![(10.0, 0.4), (50.0, 0.9)]
        );
        loss_curves(&path, &curves).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1440, 540));
        // The accuracy panel (right of x = 900) holds the red validation curve too.
        let red_right = (900..1440)
            .flat_map(|x| (0..540).map(move |y| (x, y)))
            .filter(|&(x, y)| {
                let p = img.get_pixel(x, y);
                p[0] > 200 && p[1] < 60 && p[2] < 60
            })
            .count();
        assert!(red_right > 50, "red in the accuracy panel: {red_right}");
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
