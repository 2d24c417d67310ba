use kiln_chat_template::{ApplyOptions, ChatTemplate};
#[test]
fn probe() {
    let Ok(src) = std::env::var("PROBE") else {
        return;
    };
    let t = std::time::Instant::now();
    let tpl = ChatTemplate::from_source("probe", src);
    let r = tpl.and_then(|tpl| {
        tpl.apply_json(
            &[serde_json::json!({"role":"user","content":"hi"})],
            &ApplyOptions::default(),
        )
    });
    match r {
        Ok(r) => eprintln!(
            "OK len={} head={:?}",
            r.text.len(),
            &r.text[..r.text.len().min(200)]
        ),
        Err(e) => eprintln!("ERR {e}"),
    }
    eprintln!("took {:?}", t.elapsed());
}
