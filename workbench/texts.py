"""Plain-language texts for people who have never trained a model. One place, so the tour and the pages agree."""

PIPELINE = """
**Reinforcement learning from human feedback (RLHF)** turns a model that merely *continues text* into one that
answers the way people prefer. It takes three stages; each one's output is the next one's input.
"""

STAGES = {
    "sft": ("1 · Teach by example (SFT)",
            "The base model reads a few hundred example conversations and learns to answer in that style. "
            "**In:** instruction → response examples. **Out:** a model that answers like the examples, "
            "good habits and bad ones alike."),
    "reward": ("2 · Train a judge (reward model)",
               "People find it much easier to say *which of two answers is better* than to write the perfect "
               "answer or give a score out of ten. So the judge is trained on comparisons (A is better than B) and "
               "learns to give any answer a score. **In:** pairs of answers with the preferred one marked. "
               "**Out:** a judge, checked on comparisons it never saw; below about 70% agreement it is not trusted."),
    "ppo": ("3 · Practise against the judge (PPO)",
            "The model from stage 1 answers many questions; the judge scores every answer; the model shifts toward "
            "what scored well. A leash (the *KL penalty*) keeps it close to the stage-1 model so it cannot win by "
            "writing nonsense the judge happens to like. **In:** the stage-1 model, the judge, questions. "
            "**Out:** the aligned model."),
}

DEMO = """
**The demo's preference: politeness.** The sample data answers every question with the same facts, half the time
warmly and half the time rudely. Stage 1 copies both tones. The judge learns, from comparisons, that people prefer
the polite one. Stage 3 makes the model polite. On the Compare page you can read base, stage-1 and aligned answers
side by side.
"""

SFT_INTRO = ("Supervised fine-tuning: the model learns to continue each instruction with its example response. "
             "Only a small LoRA adapter is trained; the base model stays frozen.")
REWARD_INTRO = ("The judge is a copy of the model with a one-number output. It sees (prompt, preferred answer) and "
                "(prompt, other answer) and learns to score the preferred one higher. The chart's dashed line is "
                "the gate: the accuracy it needs before PPO may use it.")
PPO_INTRO = ("Proximal Policy Optimisation: sample answers, score them with the judge, nudge the model toward the "
             "better-scored ones, and pay a penalty (KL) for drifting from the SFT model. One base model in memory "
             "serves the policy, the reference, the value function and the judge as separate LoRA adapters.")
DPO_INTRO = ("Direct Preference Optimization: the model learns from the preference pairs themselves, with no judge "
             "and no sampling. Its loss raises the probability of the preferred answer over the other one, measured "
             "against the starting model, which it may not drift far from (`beta`). Cheaper than stages 2 and 3 "
             "together; it can only learn what the pairs show.")
GRPO_INTRO = ("Group Relative Policy Optimization: for each question the model samples a group of answers, each is "
              "scored, and it shifts toward the answers that beat their group's average. No judge is needed when "
              "the answer can be checked (the **answer** reward: the reference answer appears in the reply), and no "
              "value model at all. The sample questions (`sample_data/verifiable/`) have one right answer each.")
BREVITY_DEMO = """
A judge learns what its labelers were asked, and nothing else. To see it: keep the demo's SFT model, train a second
judge on **the same prompts** where the labelers were asked *which reply is briefer?*, and align the model against
that judge. Compare then puts the two aligned models side by side: one polite, one brief, neither more correct.
About two thirds of the demo's time (a judge, PPO and a comparison).
"""

METHODS_DEMO = """
Full RLHF is not the only road. From the demo's SFT model: the judge and PPO; **DPO**, which learns from the same
preference pairs directly (no judge, no sampling); and **GRPO** on questions with one checkable answer, rewarded by a
rule instead of a judge. Compare then shows all of them on held-out checkable questions: what the politeness judge
prefers, and which answers are right. The "Which approach?" page reads each path's measured cost from these runs.
About 15 minutes on a 2-core CPU after the demo (measured: 14.5 with AVX-512).
"""

REWARD_HACKING = """
The judge is a model too. It learned from people's comparisons, and it learned **exactly what those people were
asked to judge** (in the demo: which answer is more polite), nothing else. The aligned model is trained to please
this judge, so it gets better at whatever the judge rewards. If a warm wrong answer scores higher than a curt right
one, the model learns to be warm, right or wrong. Chasing the judge's score at the expense of what people actually
wanted is called **reward hacking**.

The **KL leash** is the guard against its worst form: every step, the model pays a penalty for drifting from the
stage-1 (SFT) model, so it cannot wander off into text that only the judge likes. It keeps the model close to what
it knew; it does not teach it facts. To make the model *right*, the judge (or a rule) has to reward being right:
labelers asked to check correctness, or a reward that compares the answer with a known one.
"""
