//! Few-shot Korean summarization: two worked examples, then the article.
//!
//! Runs offline against a scripted generator:
//! `cargo run -p kiln-prompting --example korean_summarization --features testing`.
//! To use a real model, replace the one line marked below with any `Generator`.

use kiln_prompting::testing::ScriptedGenerator;
use kiln_prompting::{Example, FewShot, GenerationParams, Generator};

fn main() -> Result<(), kiln_prompting::Error> {
    // The one line to change for a real model.
    let model: Box<dyn Generator> = Box::new(scripted());

    let summarize = FewShot::new("다음 글을 한국어 한 문장으로 요약하세요.")
        .example(Example::new(
            "The city council approved a new budget on Monday that raises funding for public \
             libraries by 15 percent and extends their opening hours on weekends.",
            "시의회는 월요일 공공도서관 예산을 15% 늘리고 주말 운영 시간을 연장하는 새 예산안을 승인했다.",
        ))
        .example(Example::new(
            "Researchers reported that a new battery design charges to 80 percent in ten minutes \
             and keeps most of its capacity after a thousand cycles.",
            "연구진은 10분 만에 80%까지 충전되고 천 번 충전 후에도 용량 대부분을 유지하는 새 배터리 설계를 발표했다.",
        ))
        .params(GenerationParams::default().max_new_tokens(96));

    let article = "After three years of restoration, the old railway station reopened as a public \
                   museum on Saturday, drawing more than five thousand visitors on its first day.";
    for m in summarize.messages(article) {
        println!("[{}] {}", m.role, m.text());
    }
    println!("\nsummary: {}", summarize.run(&model, article)?);
    Ok(())
}

fn scripted() -> ScriptedGenerator {
    ScriptedGenerator::new([
        "3년간의 복원을 마친 옛 기차역이 토요일 공공 박물관으로 다시 문을 열어 첫날 5천 명 이상이 방문했다.",
    ])
}
