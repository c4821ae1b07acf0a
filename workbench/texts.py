"""Plain-language texts for people who have never trained a model: the tour and the demos. (Each stage's own texts,
its page's intro and its card in the tour, are in its record: pipelines/stages.)"""

PIPELINE = """
**Reinforcement learning from human feedback (RLHF)** turns a model that merely *continues text* into one that
answers the way people prefer. It takes three stages; each one's output is the next one's input.
"""

DEMO = """
**The demo's preference: politeness.** The sample data answers every question with the same facts, half the time
warmly and half the time rudely. Stage 1 copies both tones. The judge learns, from comparisons, that people prefer
the polite one. Stage 3 makes the model polite. On the Compare page you can read base, stage-1 and aligned answers
side by side.
"""

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

HACKING_DEMO = """
A rising score says the model pleases the judge, not that it got better. To see it: a judge trained on pairs whose
labelers were asked *which reply is more detailed?* and chose the padded one (the answer plus filler, or a fact about
something else), then PPO against it from the demo's SFT model. The judge passes its accuracy gate and the score
climbs, but the answers grow into the length limit. The **reward-hacking watch** raises its alarm on the PPO page,
naming the step and the checkpoint to go back to, and its probe slider shows the same questions answered at each
step beside the starting model's answers. About two thirds of the demo's time after a demo.
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
