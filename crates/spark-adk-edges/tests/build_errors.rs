//! Integration tests of graph validation (docs/runtime-semantics.md, "Edges and conditions"): every problem of a graph
//! is a typed build error that names the offending node or edge, and `build()` reports them all
//! at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spark_adk_core::{json, node_fn, Node, NodeError};
use spark_adk_edges::{
    BuildError, BuildErrors, Chain, EdgeCondition, ExprError, Expression, GraphBuilder, NodeRef,
};

/// Makes the condition part of an edge from a node.
type MakeChain = Box<dyn Fn(NodeRef) -> Chain>;

fn noop() -> impl Node {
    node_fn(|_| async { Ok::<_, NodeError>(json!({})) })
}

fn errors_of(g: &mut GraphBuilder) -> Vec<BuildError> {
    match g.build() {
        Ok(graph) => panic!("expected build errors, got {graph:?}"),
        Err(BuildErrors(errors)) => errors,
    }
}

#[test]
fn a_valid_graph_builds() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    g.connect(a.when("$.outputs.ok == true") >> b);
    g.connect(a.otherwise() >> "b");
    g.edge("b", a);
    let graph = g.start("a").build().unwrap();
    assert_eq!(graph.len(), 2);
    assert_eq!(graph.edges().count(), 3);
}

#[test]
fn unknown_node_in_an_edge_is_named() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    g.edge("a", "ghost");
    let errors = errors_of(g.start(a));
    assert_eq!(
        errors,
        [BuildError::UnknownNode {
            node: "node `ghost`".to_owned(),
            place: "edge `a` -> `ghost`".to_owned(),
        }]
    );
    let text = BuildErrors(errors).to_string();
    assert!(text.contains("ghost") && text.contains("`a`"), "{text}");
}

#[test]
fn node_handle_from_another_builder_is_an_unknown_node() {
    let mut other = GraphBuilder::new();
    let foreign = other.add("elsewhere", noop());
    let mut g = GraphBuilder::new();
    // Same index as the foreign handle: only the builder identity tells them apart.
    let a = g.add("a", noop());
    assert_eq!(a.index(), foreign.index());
    g.connect(a >> foreign);
    let errors = errors_of(g.start(a));
    assert_eq!(errors.len(), 1, "{errors:?}");
    match &errors[0] {
        BuildError::UnknownNode { node, place } => {
            assert!(node.contains("another graph builder"), "{node}");
            assert!(place.starts_with("edge `a` -> "), "{place}");
        }
        other => panic!("expected UnknownNode, got {other:?}"),
    }
}

#[test]
fn unknown_start_node_is_named() {
    let mut g = GraphBuilder::new();
    g.add("a", noop());
    let errors = errors_of(g.start("ghost"));
    assert_eq!(
        errors,
        [BuildError::UnknownNode {
            node: "node `ghost`".to_owned(),
            place: "the start node".to_owned(),
        }]
    );
}

#[test]
fn duplicate_node_name_is_a_build_error() {
    let mut g = GraphBuilder::new();
    let a = g.add("worker", noop());
    g.add("worker", noop());
    g.add("worker", noop());
    g.add("other", noop());
    let errors = errors_of(g.start(a));
    // Reported once per repeated name.
    assert_eq!(
        errors,
        [BuildError::DuplicateNodeName {
            name: "worker".to_owned()
        }]
    );
}

#[test]
fn missing_start_node_is_a_build_error() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    g.connect(a >> b);
    assert_eq!(errors_of(&mut g), [BuildError::MissingStart]);
}

#[test]
fn empty_graph_is_a_build_error() {
    assert_eq!(
        errors_of(&mut GraphBuilder::new()),
        [BuildError::EmptyGraph]
    );
}

#[test]
fn malformed_expression_is_reported_at_build_naming_the_edge() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    let c = g.add("c", noop());
    g.connect(a.when("$.outputs.score >=") >> b);
    g.edge_when_expr(a, c, "$.outputs.x == 'open");
    let errors = errors_of(g.start(a));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        matches!(&errors[0], BuildError::InvalidExpression { from, to, .. } if from == "a" && to == "b"),
        "{errors:?}"
    );
    assert!(
        matches!(&errors[1], BuildError::InvalidExpression { from, to, error: ExprError::UnterminatedString { .. } }
            if from == "a" && to == "c"),
        "{errors:?}"
    );
    let text = errors[0].to_string();
    assert!(text.contains("`a` -> `b`"), "{text}");
}

#[test]
fn expression_errors_can_be_had_eagerly() {
    assert!(Expression::parse("$.outputs.n >").is_err());
    assert!(EdgeCondition::expression("$.outputs.n >").is_err());
    // A parsed expression can then be used on an edge.
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    g.connect(a.when_expr(Expression::parse("$.outputs.n > 1").unwrap()) >> b);
    assert!(g.start(a).build().is_ok());
}

#[test]
fn each_malformed_expression_form_of_section_9_is_a_build_error() {
    let deep_parens = format!("{}$.outputs.x{}", "(".repeat(65), ")".repeat(65));
    let deep_nots = format!("{}$.outputs.x", "not ".repeat(65));
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("blank", "   ".to_owned()),
        ("bare word", "$.outputs.status == ok".to_owned()),
        (
            "upper-case keyword",
            "$.outputs.a AND $.outputs.b".to_owned(),
        ),
        ("unterminated string", "$.outputs.s == 'abc".to_owned()),
        ("not in", "$.outputs.x not in [1, 2]".to_owned()),
        ("chained comparison", "1 < $.outputs.x < 3".to_owned()),
        ("in without a list", "$.outputs.x in $.outputs.y".to_owned()),
        ("path not under $.outputs", "$.inputs.x == 1".to_owned()),
        ("nesting deeper than 64 (parentheses)", deep_parens),
        ("nesting deeper than 64 (not)", deep_nots),
    ];
    for (what, source) in cases {
        let mut g = GraphBuilder::new();
        let a = g.add("a", noop());
        let b = g.add("b", noop());
        g.connect(a.when(&source) >> b);
        let errors = errors_of(g.start(a));
        assert!(
            matches!(errors.as_slice(), [BuildError::InvalidExpression { from, to, .. }] if from == "a" && to == "b"),
            "{what}: {errors:?}"
        );
    }
    // Nesting up to the limit is fine.
    let ok = format!("{}$.outputs.x{}", "(".repeat(32), ")".repeat(32));
    assert!(Expression::parse(&ok).is_ok());
}

#[test]
fn all_build_errors_are_reported_at_once() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    g.add("a", noop()); // duplicate
    g.add("", noop()); // empty name
    g.edge(b, "ghost"); // unknown node
    g.connect(a.when("$.outputs.x ==") >> b); // malformed expression
    g.connect(a.on("k", 1).when("$.outputs.k == 1") >> b); // conflicting conditions
    g.connect(b.on("k", 2)); // dangling condition
    g.step_limit(0);
    g.mailbox_capacity(0);
    // ... and no start node.

    let errors = errors_of(&mut g);

    let has = |pred: &dyn Fn(&BuildError) -> bool| errors.iter().any(pred);
    assert!(has(
        &|e| matches!(e, BuildError::DuplicateNodeName { name } if name == "a")
    ));
    assert!(has(
        &|e| matches!(e, BuildError::UnknownNode { node, .. } if node.contains("ghost"))
    ));
    assert!(has(&|e| matches!(e, BuildError::InvalidExpression { .. })));
    assert!(has(&|e| matches!(
        e,
        BuildError::ConflictingConditions { .. }
    )));
    assert!(has(
        &|e| matches!(e, BuildError::DanglingCondition { from } if from == "b")
    ));
    assert!(has(&|e| matches!(e, BuildError::InvalidStepLimit)));
    assert!(has(&|e| matches!(
        e,
        BuildError::InvalidDefaultMailboxCapacity
    )));
    assert!(has(
        &|e| matches!(e, BuildError::EmptyNodeName { position } if *position == 3)
    ));
    assert!(has(&|e| matches!(e, BuildError::MissingStart)));
    assert_eq!(errors.len(), 9, "{errors:#?}");
    let text = BuildErrors(errors).to_string();
    assert!(text.contains("9 problems"), "{text}");
}

#[test]
fn conflicting_conditions_on_one_edge_are_an_error() {
    let conflicts: Vec<(&str, MakeChain)> = vec![
        (
            "on then when",
            Box::new(|a: NodeRef| a.on("k", 1).when("$.outputs.k == 1")),
        ),
        (
            "when then on",
            Box::new(|a: NodeRef| a.when("$.outputs.k == 1").on("k", 1)),
        ),
        (
            "otherwise then on",
            Box::new(|a: NodeRef| a.otherwise().on("k", 1)),
        ),
        (
            "on then otherwise",
            Box::new(|a: NodeRef| a.on("k", 1).otherwise()),
        ),
        (
            "predicate then when",
            Box::new(|a: NodeRef| a.when_fn(|_| true).when("$.outputs.k")),
        ),
    ];
    for (what, make) in conflicts {
        let mut g = GraphBuilder::new();
        let a = g.add("a", noop());
        let b = g.add("b", noop());
        g.connect(make(a) >> b);
        let errors = errors_of(g.start(a));
        assert_eq!(
            errors,
            [BuildError::ConflictingConditions {
                from: "a".to_owned(),
                to: "b".to_owned()
            }],
            "{what}"
        );
    }
    // Several `on` pairs are not a conflict: they are ANDed.
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    g.connect(a.on("k", 1).on("j", 2).priority(3) >> b);
    assert!(g.start(a).build().is_ok());
}

#[test]
fn dangling_condition_is_an_error() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    g.connect(a >> b);
    g.connect(a.on("ready", true)); // no `>> target`
    g.connect((a >> b).otherwise()); // the fallback from b has no target
    let errors = errors_of(g.start(a));
    assert_eq!(
        errors,
        [
            BuildError::DanglingCondition {
                from: "a".to_owned()
            },
            BuildError::DanglingCondition {
                from: "b".to_owned()
            },
        ]
    );
}

#[test]
fn zero_step_limit_and_zero_mailbox_capacity_are_rejected() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    g.step_limit(0);
    assert_eq!(errors_of(g.start(a)), [BuildError::InvalidStepLimit]);

    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    g.mailbox_capacity(0);
    assert_eq!(
        errors_of(g.start(a)),
        [BuildError::InvalidDefaultMailboxCapacity]
    );

    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    g.node_mailbox_capacity(a, 0);
    assert_eq!(
        errors_of(g.start(a)),
        [BuildError::InvalidMailboxCapacity {
            node: "a".to_owned()
        }]
    );
}

#[test]
fn a_zero_default_mailbox_capacity_says_it_is_about_the_graphs_default() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    g.mailbox_capacity(0);
    let message = g.start(a).build().unwrap_err().to_string();
    assert!(
        message.contains("the graph's default mailbox capacity must be at least 1"),
        "{message}"
    );
    assert!(!message.contains("node `"), "{message}");
}

#[test]
fn an_empty_node_name_is_a_build_error_naming_the_node_by_position() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let empty = g.add("", noop());
    g.connect(a >> empty);
    let err = g.start(a).build().unwrap_err();
    assert_eq!(err.errors(), [BuildError::EmptyNodeName { position: 1 }]);
    let message = err.to_string();
    assert!(
        message.contains("node #1") && message.contains("empty name"),
        "{message}"
    );
}

#[test]
fn a_node_concurrency_of_zero_is_rejected_naming_the_node() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    g.connect(a >> b);
    g.node_concurrency(a, 4);
    g.node_concurrency(b, 0);
    let errors = errors_of(g.start(a));
    assert_eq!(
        errors,
        [BuildError::InvalidConcurrency {
            node: "b".to_owned()
        }]
    );
    assert!(errors[0].to_string().contains("node `b`"));
}

#[test]
fn a_node_concurrency_is_kept_in_the_built_graph() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", noop());
    let b = g.add("b", noop());
    g.connect(a >> b);
    g.node_concurrency(b, 3);
    let topology = g.start(a).build().unwrap();
    let concurrency: Vec<usize> = topology.nodes().iter().map(|n| n.concurrency).collect();
    assert_eq!(concurrency, [1, 3]);
}
