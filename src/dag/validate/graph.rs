//! The dependency graph: unknown and repeated dependencies, cycles, reachability.

use super::*;

/// Edges run from a dependency to its dependents (the order of execution).
pub(super) struct Graph<'a> {
    pub(super) preds: Vec<Vec<usize>>,
    pub(super) succs: Vec<Vec<usize>>,
    /// Step id -> index of the first step with that id.
    pub(super) index: HashMap<&'a str, usize>,
}

impl<'a> Graph<'a> {
    pub(super) fn from_preds(preds: Vec<Vec<usize>>, index: HashMap<&'a str, usize>) -> Self {
        let mut succs = vec![Vec::new(); preds.len()];
        for (i, ps) in preds.iter().enumerate() {
            for &p in ps {
                succs[p].push(i);
            }
        }
        Self {
            preds,
            succs,
            index,
        }
    }

    /// Builds the graph and reports duplicate ids, unknown and self
    /// dependencies, repeated dependencies (a warning) and cycles.
    pub(super) fn build(steps: &[StepDoc<'a>], report: &mut Report) -> Self {
        let mut index = HashMap::new();
        let mut reported = HashSet::new();
        for (i, step) in steps.iter().enumerate() {
            let Some(id) = step.id else { continue };
            if index.contains_key(id) {
                if reported.insert(id) {
                    report.error(format!("steps: duplicate step id '{id}'"));
                }
            } else {
                index.insert(id, i);
            }
        }
        let mut preds = vec![Vec::new(); steps.len()];
        for (i, step) in steps.iter().enumerate() {
            let path = format!("steps.{}.depends_on", step.label);
            let mut seen = HashSet::new();
            for &dep in &step.depends_on {
                if !seen.insert(dep) {
                    report.warn(format!("{path}: '{dep}' is listed more than once"));
                    continue;
                }
                if Some(dep) == step.id {
                    report.error(format!("{path}: a step cannot depend on itself"));
                    continue;
                }
                match index.get(dep) {
                    // `j == i` only for a duplicate id, already reported.
                    Some(&j) if j != i => preds[i].push(j),
                    Some(_) => {}
                    None => report.error(format!("{path}: unknown step '{dep}'")),
                }
            }
        }
        let graph = Self::from_preds(preds, index);
        for cycle in graph.cycles() {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| steps[i].id.unwrap_or(&steps[i].label))
                .collect();
            report.error(format!("steps: cycle detected: {}", names.join(" -> ")));
        }
        graph
    }

    pub(super) fn len(&self) -> usize {
        self.preds.len()
    }

    /// Kahn's algorithm, the earliest declared ready step first. Steps in or
    /// after a cycle are left out.
    pub(super) fn kahn(&self) -> Vec<usize> {
        let mut pending: Vec<usize> = self.preds.iter().map(Vec::len).collect();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..self.len())
            .filter(|&i| pending[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &s in &self.succs[i] {
                pending[s] -= 1;
                if pending[s] == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        order
    }

    /// For each step, the set of its transitive dependencies; `None` for
    /// steps in or after a cycle (already an error).
    pub(super) fn ancestors(&self) -> Vec<Option<BitSet>> {
        let mut out: Vec<Option<BitSet>> = vec![None; self.len()];
        for i in self.kahn() {
            let mut set = BitSet::new(self.len());
            for &p in &self.preds[i] {
                set.insert(p);
                if let Some(of_p) = &out[p] {
                    set.union_with(of_p);
                }
            }
            out[i] = Some(set);
        }
        out
    }

    /// One cycle per strongly connected component that has one, as a path
    /// that starts and ends at the component's earliest declared step.
    pub(super) fn cycles(&self) -> Vec<Vec<usize>> {
        let component = self.components();
        let mut starts: Vec<usize> = Vec::new();
        let mut size: HashMap<usize, usize> = HashMap::new();
        for &c in &component {
            *size.entry(c).or_default() += 1;
        }
        let mut seen = HashSet::new();
        for (i, &c) in component.iter().enumerate() {
            if size[&c] > 1 && seen.insert(c) {
                starts.push(i);
            }
        }
        starts
            .into_iter()
            .map(|s| self.cycle_through(s, &component))
            .collect()
    }

    /// Shortest path from `start` back to itself inside its component (BFS).
    pub(super) fn cycle_through(&self, start: usize, component: &[usize]) -> Vec<usize> {
        let mut parent: Vec<Option<usize>> = vec![None; self.len()];
        let mut queue = std::collections::VecDeque::from([start]);
        let mut visited = vec![false; self.len()];
        visited[start] = true;
        while let Some(v) = queue.pop_front() {
            for &s in &self.succs[v] {
                if s == start {
                    return Self::ordered_cycle(start, v, &parent);
                }
                if component[s] == component[start] && !visited[s] {
                    visited[s] = true;
                    parent[s] = Some(v);
                    queue.push_back(s);
                }
            }
        }
        vec![start, start]
    }

    /// `start -> ... -> last -> start` from BFS parents.
    pub(super) fn ordered_cycle(start: usize, last: usize, parent: &[Option<usize>]) -> Vec<usize> {
        let mut back = vec![last];
        let mut at = last;
        while at != start {
            at = parent[at].unwrap_or(start);
            back.push(at);
        }
        back.reverse();
        back.push(start);
        back
    }

    /// Strongly connected components (Kosaraju, iterative): a component id
    /// per step.
    pub(super) fn components(&self) -> Vec<usize> {
        let n = self.len();
        // 1. Finish order of a depth-first search along `succs`.
        let mut finished = Vec::with_capacity(n);
        let mut visited = vec![false; n];
        for root in 0..n {
            if visited[root] {
                continue;
            }
            visited[root] = true;
            let mut stack = vec![(root, 0usize)];
            while let Some((v, next)) = stack.pop() {
                if let Some(&s) = self.succs[v].get(next) {
                    stack.push((v, next + 1));
                    if !visited[s] {
                        visited[s] = true;
                        stack.push((s, 0));
                    }
                } else {
                    finished.push(v);
                }
            }
        }
        // 2. Search along `preds` in reverse finish order.
        let mut component = vec![usize::MAX; n];
        for (c, &root) in finished.iter().rev().enumerate() {
            if component[root] != usize::MAX {
                continue;
            }
            component[root] = c;
            let mut stack = vec![root];
            while let Some(v) = stack.pop() {
                for &p in &self.preds[v] {
                    if component[p] == usize::MAX {
                        component[p] = c;
                        stack.push(p);
                    }
                }
            }
        }
        component
    }
}

#[derive(Clone)]
pub(super) struct BitSet(Vec<u64>);

impl BitSet {
    pub(super) fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }
    pub(super) fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub(super) fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    pub(super) fn union_with(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
}
