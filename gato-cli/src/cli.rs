//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// gato: a generalist agent (Reed et al., 2022) in Rust.
#[derive(Debug, Parser)]
#[command(name = "gato", version, about, long_about = None)]
pub struct Cli {
    /// Compute backend for every command that computes (see `gato backends`).
    #[arg(long, global = true, default_value = "cpu", value_name = "NAME")]
    pub backend: String,

    /// Worker threads for the CPU backend (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    /// Device ordinal for GPU backends.
    #[arg(long, global = true, default_value_t = 0, value_name = "N")]
    pub device: usize,

    /// Dtype of the decoder's matrix weights while the model runs: f32, bf16 or f16 (16-bit weights halve the
    /// bytes each decoded token reads; products still accumulate in f32).
    #[arg(long, global = true, default_value = "f32", value_name = "DTYPE")]
    pub weights: String,

    /// Precision of acting's products against the weights: f32, or bf16 — with bf16 weights, the activations are
    /// rounded to bf16 and multiplied bf16 × bf16 (f32 accumulation) where the hardware does that faster (CPU:
    /// AVX512_BF16, about twice the f32 rate); elsewhere f32.
    #[arg(long, global = true, default_value = "f32", value_name = "PRECISION")]
    pub matmul_precision: String,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format shared by commands.
#[derive(Debug, Args, Clone, Copy)]
pub struct Format {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List registered backends and whether each can run on this machine.
    Backends {
        /// Output format.
        #[command(flatten)]
        format: Format,
    },
    /// Show a config (preset or config.json) and its parameter count per component.
    Info {
        /// Preset (tiny, nano, small, baseline, large) or path to a config.json.
        #[arg(long, default_value = "small", value_name = "NAME|PATH")]
        config: String,
        /// Output format.
        #[command(flatten)]
        format: Format,
    },
    /// Verify the selected backend against a reference and measure its GEMM throughput.
    Check {
        /// Side of the square matrices of the timed GEMM.
        #[arg(long, default_value_t = 1024, value_name = "N")]
        size: usize,
        /// Output format.
        #[command(flatten)]
        format: Format,
    },
    /// Tokenize values, text or an image into one Gato observation (design.md §4) and print the tokens.
    Tokenize(TokenizeArgs),
    /// Summarise episode files: environment, episodes, steps, fields, returns.
    Episodes {
        /// Episode files (safetensors, docs/episode-format.md).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Output format.
        #[command(flatten)]
        format: Format,
    },
    /// List registered text tokenizers.
    Tokenizers {
        /// Output format.
        #[command(flatten)]
        format: Format,
    },
    /// Initialise a model from a seed and write a checkpoint (config.json + model.safetensors), atomically.
    Init {
        /// Preset or config file.
        #[arg(long, default_value = "tiny", value_name = "NAME|PATH")]
        config: String,
        /// Seed of the initialisation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Weight dtype on disk: f32, bf16 or f16.
        #[arg(long, default_value = "f32", value_name = "DTYPE")]
        dtype: String,
        /// Replace an existing checkpoint at --out (atomically: it holds the old or the new one at every instant).
        #[arg(long)]
        force: bool,
    },
    /// Run the model over an episode and print the masked loss; optionally dump logits and token ids.
    Forward(ForwardArgs),
    /// Act on an episode offline: sample each action, compare with the recorded (expert) one.
    Act(ActArgs),
    /// Redraw a training run's learning curves (loss and held-out action accuracy per task) from its
    /// metrics.jsonl, e.g. of a run made by an older version or copied from another machine.
    Plot {
        /// The run's output directory (holding metrics.jsonl).
        run: PathBuf,
        /// The PNG to write (default: RUN/loss.png).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write a checkpoint's (or a training run's newest checkpoint's) weights alone, in another dtype: the
    /// shipped weights are a training run exported as bf16.
    Export {
        /// Checkpoint directory, or a `gato train` output directory (its newest checkpoint).
        #[arg(long, value_name = "DIR")]
        checkpoint: PathBuf,
        /// Output directory (config.json + model.safetensors; no optimiser state).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Weight dtype on disk: f32, bf16 or f16.
        #[arg(long, default_value = "bf16", value_name = "DTYPE")]
        dtype: String,
        /// Replace an existing checkpoint at --out (atomically).
        #[arg(long)]
        force: bool,
    },
    /// The tour: the shipped trained weights (or an untrained preset) on the bundled real episodes — tokenize,
    /// forward pass, act and agree with the expert — then, where the simulators are set up, in the live ones.
    Demo {
        /// Checkpoint to run (default: the shipped generalist, weights/gato-nano).
        #[arg(long, value_name = "DIR", conflicts_with = "config")]
        checkpoint: Option<PathBuf>,
        /// Initialise an untrained model of this preset or config file instead.
        #[arg(long, value_name = "NAME|PATH")]
        config: Option<String>,
        /// Directory of episode files.
        #[arg(long, default_value = "data/episodes", value_name = "DIR")]
        episodes: PathBuf,
        /// Timesteps to act per environment on the bundled episodes.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Episodes per environment in the live simulators, when they are set up (0: none).
        #[arg(long, default_value_t = 2, value_name = "N")]
        live_episodes: usize,
    },
    /// Benchmark the forward pass and acting on this machine, against its measured GEMM ceiling.
    Bench {
        /// Preset or config file.
        #[arg(long, default_value = "small", value_name = "NAME|PATH")]
        config: String,
        /// Episode file acted on (its first episode; prompts from it too), as `gato act --episode F --prompt F`.
        #[arg(
            long,
            default_value = "data/episodes/metaworld.safetensors",
            value_name = "FILE"
        )]
        episode: PathBuf,
        /// Tokens in the forward pass.
        #[arg(long, default_value_t = 1024)]
        tokens: usize,
        /// Timed repetitions (the best is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Control steps timed when acting (the medians are reported).
        #[arg(long, default_value_t = 11)]
        act_steps: usize,
        /// Benchmark a training step instead (forward, backward, AdamW on one sequence of --tokens).
        #[arg(long)]
        train: bool,
        /// Output format.
        #[command(flatten)]
        format: Format,
    },
    /// Train a model by behaviour cloning on episode files (design.md §8): progress bar, metrics.jsonl,
    /// loss.png and checkpoints under --out; --resume continues a run bit for bit.
    Train(TrainArgs),
    /// Play the live simulators (Python worker processes) and score: mean return, success rate and the
    /// expert-normalised score per environment (design.md §7, docs/env-protocol.md).
    Eval(EvalArgs),
    /// Write a config preset as config.json (to edit and pass to --config).
    Config {
        /// Preset to start from.
        #[arg(long, default_value = "small", value_name = "NAME|PATH")]
        config: String,
        /// Output file (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Arguments of `gato tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// An episode file to tokenize (all timesteps of one episode) instead of command-line values.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["continuous", "discrete", "text", "text_file", "image"])]
    pub episode: Option<PathBuf>,
    /// Which episode of the file.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub episode_index: usize,
    /// Continuous values, comma-separated (e.g. `-256,-1,0,1.5`).
    #[arg(long, allow_hyphen_values = true, value_name = "LIST")]
    pub continuous: Option<String>,
    /// Turn mu-law off for the continuous values (only clip to [-1, 1] and bin).
    #[arg(long)]
    pub no_mu_law: bool,
    /// Discrete values, comma-separated integers in [0, 1024).
    #[arg(long, allow_hyphen_values = true, value_name = "LIST")]
    pub discrete: Option<String>,
    /// Text to tokenize.
    #[arg(long, value_name = "TEXT", conflicts_with = "text_file")]
    pub text: Option<String>,
    /// A UTF-8 file whose whole content is the text to tokenize (for text too long for the command line).
    #[arg(long, value_name = "FILE")]
    pub text_file: Option<PathBuf>,
    /// Text tokenizer: a registered name (`gato tokenizers`) or a SentencePiece .model file.
    #[arg(long, default_value = "bytes", value_name = "NAME|PATH")]
    pub text_tokenizer: String,
    /// An image file (PNG or JPEG).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Pad images whose sides are not multiples of 16 (bottom/right, black) instead of rejecting them.
    #[arg(long)]
    pub pad: bool,
    /// Config preset or file (token layout, mu-law constants, patch size).
    #[arg(long, default_value = "small", value_name = "NAME|PATH")]
    pub config: String,
    /// Output format.
    #[command(flatten)]
    pub format: Format,
}

/// Arguments of `gato train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Preset or config.json of a new model (its `training` section sets the optimiser and schedule).
    #[arg(
        long,
        default_value = "nano",
        value_name = "NAME|PATH",
        conflicts_with = "resume"
    )]
    pub config: String,
    /// Episode files, or directories of them (`*.safetensors`); one task per environment.
    #[arg(long, num_args = 1.., value_name = "DIR|FILE")]
    pub data: Vec<PathBuf>,
    /// Optimiser steps of the whole run (the schedule spans them; a resumed run keeps its own unless given).
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Sequences per micro-batch (default: the config's `training.batch_size`).
    #[arg(long, value_name = "B")]
    pub batch: Option<usize>,
    /// Micro-batches per optimiser step (gradient accumulation; default 1).
    #[arg(long, value_name = "K")]
    pub accumulate: Option<usize>,
    /// Tokens per training sequence (default and maximum: the model's context).
    #[arg(long, value_name = "L")]
    pub seq: Option<usize>,
    /// Output directory: checkpoints/, metrics.jsonl, loss.png.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the run of this output directory or checkpoint (its config, data, seed and batch shape).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Validate on the held-out episodes every N steps (and at the end; 0: only at the end).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Write a checkpoint every N steps (and at the end; 0: only at the end).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept under --out (the newest; default 2).
    #[arg(long, value_name = "N")]
    pub keep_checkpoints: Option<usize>,
    /// Seed of the initial weights, the data order, patch positions and dropout.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Fraction of each task's episodes held out for validation (the last ones); 0.1 for a new run, the
    /// resumed run's value on --resume.
    #[arg(long, value_name = "F")]
    pub validation_fraction: Option<f64>,
    /// How often each task is sampled: `tokens` (in proportion to its training tokens; a new run's default),
    /// `uniform`, or a relative weight per task, `NAME=W,...` (every task named; a name may be a case-insensitive
    /// part of the environment id: `cartpole=1,breakout=0.5,...`). The resumed run's value on --resume.
    #[arg(long, value_name = "tokens|uniform|NAME=W,...")]
    pub task_weights: Option<String>,
    /// Precision of the matrix products (design.md §8): `bf16` multiplies with bf16 copies of the block weights
    /// (f32 master weights, moments and sums) where the backend has fast bf16 products (CUDA tensor cores) and
    /// stays f32 elsewhere, so the same command runs on a CPU. f32 for a new run; the resumed run's value on
    /// --resume, which may change it.
    #[arg(long, value_name = "f32|bf16")]
    pub precision: Option<String>,
    /// Data parallel over NCCL (design.md §8): the number of processes (one per GPU) that train together. Each
    /// takes an equal share of every step's --accumulate micro-batches (which must divide by it); rank 0 writes
    /// the checkpoints. Needs --rendezvous and a backend with collectives (--backend cuda).
    #[arg(long, value_name = "W", requires = "rendezvous")]
    pub world_size: Option<usize>,
    /// This process's rank, 0..world-size (default 0).
    #[arg(long, value_name = "R", requires = "world_size")]
    pub rank: Option<usize>,
    /// A file every rank can reach (a shared filesystem across machines): rank 0 writes the NCCL group id there,
    /// the others wait for it. Start all ranks within two minutes; an older file is from an earlier run.
    #[arg(long, value_name = "FILE", requires = "world_size")]
    pub rendezvous: Option<PathBuf>,
    /// Text tokenizer for text fields.
    #[arg(long, default_value = "bytes", value_name = "NAME|PATH")]
    pub text_tokenizer: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gato forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Checkpoint directory (from `gato init`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Episode file.
    #[arg(long, value_name = "FILE")]
    pub episode: PathBuf,
    /// Which episode of the file.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub episode_index: usize,
    /// Text tokenizer for text fields.
    #[arg(long, default_value = "bytes", value_name = "NAME|PATH")]
    pub text_tokenizer: String,
    /// Write `logits` `[T, vocab]` (f32) and the model inputs — `token_ids` (u32), `local_positions` (i32, −1 for
    /// none), `loss_mask` and `image_mask` (u8), each `[T]` — to this safetensors file (for
    /// `bench/compare_pytorch.py`).
    #[arg(long, value_name = "OUT")]
    pub dump_logits: Option<PathBuf>,
    /// Write the gradient of the masked loss with respect to every parameter (f32, named as the parameters; a
    /// parameter the window does not reach is absent) to this safetensors file (for
    /// `bench/compare_pytorch_train.py`).
    #[arg(long, value_name = "OUT")]
    pub dump_gradients: Option<PathBuf>,
    /// Then take N AdamW steps on this one window (the checkpoint's training settings, evaluation-mode patch
    /// positions, no dropout) and report the loss before each (`train_losses`): a fixed-batch trajectory to
    /// compare with another framework.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub train_steps: usize,
    /// Timed repetitions of the forward pass (the best is reported).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub reps: usize,
    /// Output format.
    #[command(flatten)]
    pub format: Format,
}

/// Arguments of `gato eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint directory (required with --policy model).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Environments, comma-separated: cartpole, pendulum, babyai, breakout, metaworld, or all (mock: the
    /// protocol's test task).
    #[arg(long, default_value = "all", value_name = "LIST")]
    pub env: String,
    /// Episodes per environment; episode i starts from seed --seed + i.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub episodes: usize,
    /// Worker processes (and acting threads) per environment.
    #[arg(long, default_value_t = 1, value_name = "W")]
    pub workers: usize,
    /// Who acts: the model, the environment's scripted expert, or a uniform random policy (the last two need no
    /// checkpoint: they check the bridge and the references).
    #[arg(long, default_value = "model", value_name = "model|expert|random")]
    pub policy: String,
    /// Prompt the model with an expert demonstration of the task (the first episode of
    /// --prompt-episodes/<env>.safetensors, up to half the context), or with nothing.
    #[arg(long, default_value = "expert", value_name = "expert|none")]
    pub prompt: String,
    /// Directory of recorded episodes the prompts come from.
    #[arg(long, default_value = "data/episodes", value_name = "DIR")]
    pub prompt_episodes: PathBuf,
    /// Seed of episode 0 (the default is far from the recorded episodes' seeds).
    #[arg(long, default_value_t = 1_000_000, value_name = "S")]
    pub seed: u64,
    /// Cut episodes after this many steps (default: the environment's own limit).
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// Write an animated GIF of episode 0 of each environment to DIR/<env>.gif.
    #[arg(long, value_name = "DIR")]
    pub video: Option<PathBuf>,
    /// Random and expert reference returns (default: data/references.json).
    #[arg(long, value_name = "FILE")]
    pub references: Option<PathBuf>,
    /// Python interpreter with the simulators (default: $GATO_PYTHON, else .cache/venv-record/bin/python from
    /// `bash tools/record/setup.sh`).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Seconds a worker may take to answer one request before it counts as hung and is restarted.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub step_timeout: f64,
    /// Sampling temperature (> 0).
    #[arg(long, default_value_t = 1.0, conflicts_with = "argmax")]
    pub temperature: f32,
    /// Take the most likely legal token instead of sampling.
    #[arg(long)]
    pub argmax: bool,
    /// When the context window is full: `rebuild` it from the kept timesteps (exact, what training showed the
    /// model) or `slide` it (a step keeps its cost, logits drift from the trained model's; design.md §7).
    #[arg(long, default_value = "rebuild", value_name = "POLICY")]
    pub window: String,
    /// Text tokenizer for text fields.
    #[arg(long, default_value = "bytes", value_name = "NAME|PATH")]
    pub text_tokenizer: String,
    /// Output format.
    #[command(flatten)]
    pub format: Format,
}

/// Arguments of `gato act`.
#[derive(Debug, Args)]
pub struct ActArgs {
    /// Checkpoint directory.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Episode file whose observations the agent acts on.
    #[arg(long, value_name = "FILE")]
    pub episode: PathBuf,
    /// Which episode of the file.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub episode_index: usize,
    /// A demonstration file whose first episode's first timesteps prompt the agent.
    #[arg(long, value_name = "FILE")]
    pub prompt: Option<PathBuf>,
    /// Sampling temperature (> 0).
    #[arg(long, default_value_t = 1.0, conflicts_with = "argmax")]
    pub temperature: f32,
    /// Take the most likely legal token instead of sampling.
    #[arg(long)]
    pub argmax: bool,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Act on at most this many timesteps.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// Text tokenizer for text fields.
    #[arg(long, default_value = "bytes", value_name = "NAME|PATH")]
    pub text_tokenizer: String,
    /// When the context window is full: `rebuild` the KV cache from the kept timesteps (exact, design.md §6; a forward
    /// pass over the window at every later step) or `slide` it (keep the kept tokens' cached keys and values, as
    /// Transformer-XL memory does; a step keeps its cost; logits differ from a fresh forward).
    #[arg(long, default_value = "rebuild", value_name = "POLICY")]
    pub window: String,
    /// Output format.
    #[command(flatten)]
    pub format: Format,
}
