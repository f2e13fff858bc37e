// taskq dashboard: small progressive enhancements; every page works without it.
// Loaded from a file (the Content-Security-Policy forbids inline script).
(function () {
  "use strict";
  // "select all" checkboxes: <input type="checkbox" data-select-all="name">
  document.addEventListener("change", function (event) {
    var box = event.target;
    var name = box && box.getAttribute && box.getAttribute("data-select-all");
    if (!name) { return; }
    var boxes = document.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
    for (var i = 0; i < boxes.length; i++) { boxes[i].checked = box.checked; }
  });
  // forms that change things ask first: <form data-confirm="Cancel 3 tasks?">
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
})();
