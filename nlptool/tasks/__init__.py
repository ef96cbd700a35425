"""The registry of tasks: name -> Task class, imported on first use.

`nlptool train TASK`, run directories (run.json) and the dataset registry
name a task the same way. A task module imports no TensorFlow at import
time (see `nlptool.tasks.base`), so listing the tasks and their options is
instant.
"""

import importlib
from typing import TYPE_CHECKING

from nlptool.errors import UsageError

if TYPE_CHECKING:
    from nlptool.tasks.base import Task

# name -> "module:class"; `register` adds more (a plug-in task, a test's toy task)
REGISTRY: "dict[str, str | type[Task]]" = {
    "sentiment": "nlptool.tasks.sentiment:SentimentTask",
    "language-model": "nlptool.tasks.language_model:LanguageModelTask",
    "translation": "nlptool.tasks.translation:TranslationTask",
    "summarization": "nlptool.tasks.summarization:SummarizationTask",
}
_LOADED: "dict[str, Task]" = {}


def register(task_class):
    """Add a Task subclass to the registry under its `name` (usable as a class decorator)."""
    REGISTRY[task_class.name] = task_class
    _LOADED.pop(task_class.name, None)
    return task_class


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> "Task":
    """The task registered as `name` (an instance, made once)."""
    if name not in REGISTRY:
        raise UsageError(f"Unknown task {name!r}; the tasks are {', '.join(REGISTRY)}.")
    if name not in _LOADED:
        entry = REGISTRY[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
        _LOADED[name] = entry()
    return _LOADED[name]
