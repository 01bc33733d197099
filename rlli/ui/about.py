"""Every piece of text the app shows that is not data: titles, introductions, consent, notices."""

TITLE = "RLLI Studio"

INTRO = """# RLLI Studio
Users with similar text-to-image prompts share the first denoising steps of a diffusion model; LLM agents
that role-play Big-Five personalities rate what each user got; a G-DDPG policy allocates bandwidth and
compute (Du et al., *Reinforcement Learning With LLMs Interaction For Distributed Diffusion Model
Services*, IEEE TPAMI 2025). Take part, invite personas, watch the system decide, and compare people's
ratings with the agents'."""

CONSENT = """### Before you start
This is a research demo. If you take part, we store **your prompt, the image you got, your rating and
its reason, and your Big-Five scores if you fill in the questionnaire**, under an anonymous id (a salted
hash of a random token kept in your browser, or of your Hugging Face username if you sign in - never
your name or IP address). The data is used to
compare people's quality-of-experience ratings with those of LLM agents, and may be published as an
anonymous data set. You can download your own ratings at any time in the *Data* tab. Do not enter
personal information in prompts."""

TIPI_INTRO = """### Your personality (optional, ten quick items)
The Ten-Item Personality Inventory (Gosling, Rentfrow & Swann, 2003). Agents will also rate your image
*as you* - given these scores - so that we can see whether they predict your rating. Skip it if you prefer."""

EMBEDDED_MODEL_NOTE = """**The embedded model draws a small procedural world** (64x64 pixels): an object (house, tree, boat,
mountain, car, ...) in a colour, with a count, position, time of day, weather, ground and look. Prompts
outside that world still give a picture, but it will not follow them. Examples are below."""

LLM_NOTE = """Agents run on the configured LLM endpoint. Offline, that is the embedded **SmolLM2-135M-Instruct**, a
very small model: its ratings are weak and often generic. Point `RLLI_LLM_BASE_URL` / `RLLI_LLM_MODEL` at a
stronger endpoint (see the README) for meaningful agent ratings."""

AFTER_RATING = "Thanks - your rating is stored. Here is what the agents said about the same image:"

NOT_YET = "Generate an image first."

HF_LOGIN = """*Optional:* sign in with Hugging Face to keep your ratings under your account (stored as a salted
hash, like every id) across browsers and devices. Without signing in, this browser keeps an anonymous id."""
