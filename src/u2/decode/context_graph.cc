#include "u2/decode/context_graph.h"

#include <cmath>
#include <deque>

namespace u2 {
namespace {

inline uint64_t EdgeKey(int32_t node, int token) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(node)) << 32) | static_cast<uint32_t>(token);
}

}  // namespace

StatusOr<std::shared_ptr<const ContextGraph>> ContextGraph::Build(std::span<const ContextPhrase> phrases,
                                                                  int word_separator) {
  auto graph = std::shared_ptr<ContextGraph>(new ContextGraph());
  graph->word_separator_ = word_separator;
  std::vector<Node>& nodes = graph->nodes_;
  nodes.emplace_back();  // the root
  auto add_edge = [&](int32_t node, int token, float bonus) {
    auto [it, inserted] =
        graph->children_.try_emplace(EdgeKey(node, token), static_cast<int32_t>(nodes.size()));
    if (inserted) {
      Node child;
      child.parent = node;
      child.token = token;
      child.token_bonus = bonus;
      nodes.push_back(child);
    } else {
      Node& child = nodes[static_cast<size_t>(it->second)];
      child.token_bonus = std::max(child.token_bonus, bonus);
    }
    return it->second;
  };
  if (word_separator >= 0) graph->start_ = add_edge(0, word_separator, 0.0f);
  for (size_t p = 0; p < phrases.size(); ++p) {
    const ContextPhrase& phrase = phrases[p];
    if (phrase.tokens.empty())
      return InvalidArgument("hotword phrase " + std::to_string(p) + " has no tokens");
    if (!std::isfinite(phrase.boost)) {
      return InvalidArgument("hotword phrase " + std::to_string(p) + " has a non-finite boost");
    }
    int32_t node = graph->start_;
    for (int token : phrase.tokens) {
      if (token < 0)
        return InvalidArgument("hotword phrase " + std::to_string(p) + " has a negative token id");
      node = add_edge(node, token, token == word_separator ? 0.0f : phrase.boost);
    }
    if (word_separator >= 0 && phrase.tokens.back() != word_separator)
      node = add_edge(node, word_separator, 0.0f);
    nodes[static_cast<size_t>(node)].phrase_end = true;
  }
  graph->num_phrases_ = static_cast<int>(phrases.size());

  // Breadth first: parents before children, so bonuses and failure links build on finished nodes.
  std::vector<std::vector<int32_t>> kids(nodes.size());
  for (size_t i = 1; i < nodes.size(); ++i)
    kids[static_cast<size_t>(nodes[i].parent)].push_back(static_cast<int32_t>(i));
  std::deque<int32_t> queue(kids[0].begin(), kids[0].end());
  while (!queue.empty()) {
    const int32_t id = queue.front();
    queue.pop_front();
    Node& n = nodes[static_cast<size_t>(id)];
    const Node& parent = nodes[static_cast<size_t>(n.parent)];
    n.path_bonus = parent.path_bonus + n.token_bonus;
    n.kept_bonus = n.phrase_end ? n.path_bonus : parent.kept_bonus;
    n.open_bonus = n.path_bonus - n.kept_bonus;
    // Failure link: the longest proper suffix of this node's tokens that is a node.
    n.fail = 0;
    if (n.parent != 0) {
      int32_t f = parent.fail;
      while (true) {
        const int32_t c = graph->Child(f, n.token);
        if (c >= 0) {
          n.fail = c;
          break;
        }
        if (f == 0) break;
        f = nodes[static_cast<size_t>(f)].fail;
      }
    }
    for (int32_t k : kids[static_cast<size_t>(id)]) queue.push_back(k);
  }
  return std::shared_ptr<const ContextGraph>(std::move(graph));
}

float ContextGraph::FinalScore(int32_t state) const {
  float score = 0.0f;
  if (word_separator_ >= 0) score += Step(state, word_separator_, &state);  // the end ends a word
  return score - nodes_[static_cast<size_t>(state)].open_bonus;
}

int32_t ContextGraph::Child(int32_t node, int token) const {
  const auto it = children_.find(EdgeKey(node, token));
  return it == children_.end() ? -1 : it->second;
}

float ContextGraph::Step(int32_t state, int token, int32_t* next) const {
  int32_t n = state;
  int32_t to = 0;
  while (true) {
    const int32_t c = Child(n, token);
    if (c >= 0) {
      to = c;
      break;
    }
    if (n == 0) break;  // no phrase continues here: back to the root
    n = nodes_[static_cast<size_t>(n)].fail;
  }
  const Node& from = nodes_[static_cast<size_t>(state)];
  const Node& dest = nodes_[static_cast<size_t>(to)];
  float delta = dest.open_bonus - from.open_bonus;
  // Reaching a phrase's end keeps its bonus: what the match earned since the last kept phrase.
  if (dest.phrase_end) delta += dest.path_bonus - nodes_[static_cast<size_t>(dest.parent)].kept_bonus;
  *next = to;
  return delta;
}

}  // namespace u2
