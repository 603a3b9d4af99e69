pub mod random_graphs;
