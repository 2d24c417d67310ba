//! A chat template and a conversation, split at the first 0 byte; the body is
//! `bodies/chat_template.rs`.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

#[path = "../bodies/chat_template.rs"]
mod body;

fuzz_target!(|data: &[u8]| {
    // kiln catches panics of the template engine and returns them as `Error::EnginePanic`;
    // libfuzzer-sys's hook would abort on those first. An uncaught panic still aborts.
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    body::run(data);
});
