//! Hostile and malformed templates: every one fails with an error that names the problem, the
//! template and the line, quickly, and none panics, overflows the stack or exhausts memory.

use std::time::{Duration, Instant};

use kiln_chat_template::{ApplyOptions, ChatTemplate, Error, Limit, Limits, MAX_INPUT_DEPTH};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Each case must end well within this, in a debug build (they take milliseconds, or about half
/// a second for the ones that burn the whole default fuel).
const QUICK: Duration = Duration::from_secs(3);

fn hi() -> Vec<Value> {
    vec![json!({"role": "user", "content": "hi"})]
}

/// Renders `source` on one message with `limits`, timing it.
fn render_with(source: &str, limits: Limits) -> Result<String, Error> {
    let start = Instant::now();
    let result = ChatTemplate::from_source("hostile", source)
        .and_then(|t| {
            t.with_limits(limits)
                .apply_json(&hi(), &ApplyOptions::default())
        })
        .map(|r| r.text);
    let took = start.elapsed();
    assert!(took < QUICK, "{source}: took {took:?}");
    result
}

fn render(source: &str) -> Result<String, Error> {
    render_with(source, Limits::default())
}

/// Asserts that `source` fails on `limit`, at line `line`, with a message containing `needle`.
fn assert_limit(source: &str, limit: Limit, line: usize, needle: &str) {
    match render(source) {
        Err(Error::LimitExceeded {
            template,
            line: got_line,
            limit: got,
            message,
        }) => {
            assert_eq!(template, "hostile");
            assert_eq!((got, got_line), (limit, line), "{source}: {message}");
            assert!(message.contains(needle), "{source}: {message}");
        }
        other => panic!("{source}: expected the {limit} limit, got {other:?}"),
    }
}

#[test]
fn loop_cycle_without_items_is_an_error() {
    // minijinja divides by the number of items: the panic is caught and reported.
    let source = "{% for x in [1, 2] %}{{ loop.cycle() }}{% endfor %}";
    match render(source) {
        Err(Error::EnginePanic { template, message }) => {
            assert_eq!(template, "hostile");
            assert!(message.contains("divisor of zero"), "{message}");
        }
        other => panic!("expected EnginePanic, got {other:?}"),
    }
    // The template (and its environment) still render afterwards.
    let t = ChatTemplate::from_source(
        "t",
        "{% for x in [1, 2] %}{{ loop.cycle('a', 'b') }}{% endfor %}",
    )
    .expect("compiles");
    assert_eq!(
        t.apply_json(&hi(), &ApplyOptions::default())
            .expect("renders")
            .text,
        "ab"
    );
}

#[test]
fn a_namespace_cannot_contain_itself() {
    let cases = [
        "{% set ns = namespace(a=1) %}\n{% set ns.self = ns %}{{ ns | tojson }}",
        "{% set ns = namespace(a=1) %}\n{% set ns.self = ns %}{{ ns ~ '' }}",
        "{% set ns = namespace(a=1) %}\n{% set ns.l = [1, {'k': ns}] %}{{ ns }}",
        "{% set ns = namespace(a=1) %}\n{% set ns.g = [ns] | select %}{{ ns == ns }}",
        "{% set ns = namespace(a=1) %}\n{% set ns.b | batch(2, ns) %}x{% endset %}{{ ns | pprint }}",
        "{% set a = namespace() %}{% set b = namespace() %}\n{% set a.b = b %}{% set b.a = a %}{{ a }}",
        "{% set ns = namespace(a=1) %}\n{% set ns.x, ns.y = 1, ns %}{{ ns ~ '' }}",
    ];
    for source in cases {
        match render(source) {
            Err(Error::Render {
                template,
                line,
                message,
            }) => {
                assert_eq!((template.as_str(), line), ("hostile", 2), "{source}");
                assert!(
                    message.contains("namespace inside a namespace"),
                    "{message}"
                );
            }
            other => panic!("{source}: expected a render error, got {other:?}"),
        }
    }
    // Lists and dicts cannot be changed after they are made, so they cannot contain themselves;
    // a namespace may still hold what real templates keep there.
    let ok = "{% set ns = namespace(items=[], text='') %}{% for m in messages %}\
              {% set ns.items = ns.items + [m, {'role': m.role}] %}\
              {% set ns.text = ns.text ~ m.content %}{% endfor %}\
              {{ ns.items | list | length }} {{ ns.text }} {{ ns.items | list | tojson }}";
    assert_eq!(
        render(ok).expect("renders"),
        r#"2 hi [{"role": "user", "content": "hi"}, {"role": "user"}]"#
    );
}

#[test]
fn nesting_grown_in_a_namespace_is_bounded() {
    // One level per iteration would otherwise overflow the stack when printed.
    assert_limit(
        "{% set ns = namespace(x=0) %}{% for i in range(100000) %}\n{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
        Limit::Nesting,
        2,
        "deeper than 64",
    );
    // Sharing parts makes the value exponentially large: walking it is paid for with fuel.
    assert_limit(
        "{% set ns = namespace(x=0) %}{% for i in range(100) %}\n{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}",
        Limit::Fuel,
        2,
        "fuel",
    );
}

#[test]
fn deep_values_are_not_printed() {
    // A value nested deeper than 256 levels (built without a namespace) is refused by kiln's own
    // printing rather than recursed into.
    let source = format!(
        "{{% set d = 1 %}}{}\n{{{{ d }}}}",
        "{% set d = [d] %}".repeat(300)
    );
    assert_limit(&source, Limit::Nesting, 2, "256 levels");
    let source = format!(
        "{{% set d = 1 %}}{}\n{{{{ d | tojson }}}}",
        "{% set d = {'k': d} %}".repeat(300)
    );
    assert_limit(&source, Limit::Nesting, 2, "256 levels");
}

#[test]
fn deep_json_input_is_refused() {
    let mut deep = json!("leaf");
    for _ in 0..MAX_INPUT_DEPTH + 1 {
        deep = json!([deep]);
    }
    let t = ChatTemplate::from_source("t", "{{ messages | tojson }}").expect("compiles");
    let message = json!({"role": "user", "content": deep});
    match t.apply_json(&[message], &ApplyOptions::default()) {
        Err(Error::InvalidInput(m)) => {
            assert!(m.contains("message 0 nests deeper than 128"), "{m}")
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let opts = ApplyOptions {
        tools: Some(vec![json!({"type": "function", "function": deep})]),
        ..ApplyOptions::default()
    };
    assert!(matches!(
        t.apply_json(&hi(), &opts),
        Err(Error::InvalidInput(m)) if m.contains("tools nests deeper")
    ));
    // As deep as serde_json parses is accepted, and printed like Python.
    let mut ok = json!(1);
    for _ in 0..MAX_INPUT_DEPTH - 2 {
        ok = json!([ok]);
    }
    let out = t
        .apply_json(&[json!({"content": ok})], &ApplyOptions::default())
        .expect("renders");
    assert!(
        out.text
            .contains(&format!("{}1{}", "[".repeat(126), "]".repeat(126)))
    );
}

#[test]
fn huge_widths_and_counts_are_refused_before_allocating() {
    let cases = [
        (
            "{{ 'a' | center(10000000000) }}",
            Limit::OutputSize,
            "center",
        ),
        (
            "{{ 'a' | center(2000000000) }}",
            Limit::OutputSize,
            "center",
        ),
        (
            "{{ {'a': 1} | tojson(indent=10000000000) }}",
            Limit::OutputSize,
            "indent",
        ),
        (
            "{{ '{:>10000000000}'.format(1) }}",
            Limit::OutputSize,
            "str.format",
        ),
        (
            "{{ '{:.100000000}'.format(1.5) }}",
            Limit::OutputSize,
            "str.format",
        ),
        (
            r"{{ 'a\nb' | indent(10000000000) }}",
            Limit::OutputSize,
            "indent",
        ),
        ("{{ '%10000000000d' | format(1) }}", Limit::Fuel, ""),
        ("{{ 'a' * 10000000000 }}", Limit::Fuel, ""),
    ];
    for (source, limit, needle) in cases {
        assert_limit(source, limit, 1, needle);
    }
    // minijinja's range refuses more than 100,000 items.
    match render("{{ range(10000000000) | length }}") {
        Err(Error::Render {
            message, line: 1, ..
        }) => {
            assert!(message.contains("range has too many elements"), "{message}")
        }
        other => panic!("expected a render error, got {other:?}"),
    }
    // Sizes under the limits still work.
    assert_eq!(render("{{ 'ab' | center(6) }}").expect("renders"), "  ab  ");
    assert_eq!(
        render("{{ [1] | tojson(indent=2) }}").expect("renders"),
        "[\n  1\n]"
    );
}

#[test]
fn the_prompt_size_is_limited() {
    // A string bigger than the prompt limit, built by minijinja itself, fails when written.
    assert_limit(
        "{{ 'a' * 20000000 }}",
        Limit::OutputSize,
        0,
        "larger than 16777216 bytes",
    );
    let limits = Limits {
        max_output_bytes: 1000,
        ..Limits::default()
    };
    match render_with(
        "{% for i in range(1000) %}{{ i }}{% endfor %}",
        limits.clone(),
    ) {
        Err(Error::LimitExceeded {
            limit: Limit::OutputSize,
            message,
            ..
        }) => assert!(message.contains("larger than 1000 bytes"), "{message}"),
        other => panic!("expected the output size limit, got {other:?}"),
    }
    // kiln's own printing stops at the same limit.
    match render_with("{{ range(1000) | list | tojson }}", limits) {
        Err(Error::LimitExceeded {
            limit: Limit::OutputSize,
            ..
        }) => {}
        other => panic!("expected the output size limit, got {other:?}"),
    }
}

#[test]
fn endless_loops_run_out_of_fuel() {
    let triple = "{% for i in range(10000) %}{% for j in range(10000) %}\n\
                  {% for k in range(10000) %}{% endfor %}{% endfor %}{% endfor %}";
    // With the default fuel (about half a second of this in a debug build).
    assert_limit(triple, Limit::Fuel, 2, "fuel");
    // With less fuel, sooner.
    let start = Instant::now();
    let limits = Limits {
        fuel: Some(100_000),
        ..Limits::default()
    };
    assert!(matches!(
        render_with(triple, limits),
        Err(Error::LimitExceeded {
            limit: Limit::Fuel,
            ..
        })
    ));
    assert!(start.elapsed() < Duration::from_millis(500));
    // A template that builds strings in a loop pays for the bytes.
    assert_limit(
        "{% set ns = namespace(s='') %}{% for i in range(100000) %}\n{% set ns.s = ns.s ~ ('x' * 10000) %}{% endfor %}",
        Limit::Fuel,
        2,
        "fuel",
    );
}

#[test]
fn deep_recursion_is_an_error() {
    assert_limit(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}",
        Limit::Recursion,
        1,
        "nest too deeply",
    );
    let looped = "{% set d = [1] %}{% for i in range(300) %}{% endfor %}\
                  {% for m in [d, d, d] recursive %}{{ loop([m]) }}{% endfor %}";
    assert!(matches!(
        render(looped),
        Err(Error::LimitExceeded {
            limit: Limit::Recursion,
            ..
        })
    ));
}

#[test]
fn limits_are_configurable() {
    let t = ChatTemplate::from_source("t", "{{ messages[0].content * 100 }}").expect("compiles");
    assert_eq!(t.limits(), &Limits::default());
    let small = t.clone().with_limits(Limits {
        max_output_bytes: 10,
        ..Limits::default()
    });
    assert!(small.apply_json(&hi(), &ApplyOptions::default()).is_err());
    // The original is unchanged, and no limit at all is possible for trusted templates.
    assert_eq!(
        t.apply_json(&hi(), &ApplyOptions::default())
            .expect("renders")
            .text
            .len(),
        200
    );
    let unbounded = t.with_limits(Limits {
        fuel: None,
        ..Limits::default()
    });
    assert!(
        unbounded
            .apply_json(&hi(), &ApplyOptions::default())
            .is_ok()
    );
}

// A small grammar of tags, filters and values (with absurd sizes and the known panics among
// them): rendering any sentence it makes returns, as a result or an error, quickly.

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("-3".to_owned()),
        Just("10000000000".to_owned()),
        Just("2.5".to_owned()),
        Just("'ab'".to_owned()),
        Just("''".to_owned()),
        Just("none".to_owned()),
        Just("true".to_owned()),
        Just("ns".to_owned()),
        Just("ns.v".to_owned()),
        Just("x".to_owned()),
        Just("messages".to_owned()),
        Just("messages[0]".to_owned()),
        Just("loop".to_owned()),
        Just("range(5)".to_owned()),
        Just("namespace(v=1)".to_owned()),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 24, 3, |inner| {
        let filter = prop_oneof![
            Just("tojson"),
            Just("tojson(indent=3)"),
            Just("tojson(indent=10000000000)"),
            Just("string"),
            Just("list"),
            Just("length"),
            Just("join(',')"),
            Just("center(10000000000)"),
            Just("center(9)"),
            Just("indent(10000000000)"),
            Just("format(1)"),
            Just("batch(2, ns)"),
            Just("reverse"),
            Just("select"),
            Just("map('string')"),
            Just("trim"),
            Just("truncate(3)"),
            Just("wordcount"),
            Just("pprint"),
            Just("items"),
        ];
        prop_oneof![
            (inner.clone(), filter).prop_map(|(e, f)| format!("({e})|{f}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{{'k': {a}, 'j': {b}}}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) ~ ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) * ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) == ({b})")),
            inner
                .clone()
                .prop_map(|e| format!("'{{:>9}}{{}}'.format({e}, 1)")),
            inner.clone().prop_map(|e| format!("({e}).index(1)")),
            Just("loop.cycle()".to_owned()),
        ]
    })
}

fn stmt() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("text ".to_owned()),
        expr().prop_map(|e| format!("{{{{ {e} }}}}")),
        expr().prop_map(|e| format!("{{% set ns.v = {e} %}}")),
        expr().prop_map(|e| format!("{{% set x = {e} %}}")),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (expr(), prop::collection::vec(inner.clone(), 1..3)).prop_map(|(e, body)| format!(
                "{{% for y in {e} %}}{}{{% endfor %}}",
                body.concat()
            )),
            (expr(), inner.clone(), inner.clone())
                .prop_map(|(e, a, b)| format!("{{% if {e} %}}{a}{{% else %}}{b}{{% endif %}}")),
            prop::collection::vec(inner, 1..4).prop_map(|body| body.concat()),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_templates_never_panic(body in stmt()) {
        let source = format!("{{% set ns = namespace(v=0) %}}{{% set x = 1 %}}{body}");
        let limits = Limits { fuel: Some(200_000), ..Limits::default() };
        let start = Instant::now();
        let result = ChatTemplate::from_source("fuzz", source.as_str())
            .and_then(|t| t.with_limits(limits).apply_json(&hi(), &ApplyOptions::default()));
        prop_assert!(start.elapsed() < QUICK, "{source}: took {:?}", start.elapsed());
        if let Err(Error::EnginePanic { message, .. }) = &result {
            // The one panic minijinja is known to have on these inputs.
            prop_assert!(source.contains("loop.cycle()"), "{source}: {message}");
        }
    }
}
