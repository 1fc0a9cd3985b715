// A stand-in for Google's IMA HTML5 SDK (ima3.js), for tests and local runs: the same
// `google.ima` names a page uses for one linear ad, doing what the real SDK does on the
// wire. `AdsLoader.requestAds` fetches the VAST ad tag; `AdsManager.start` fires the
// impression pixel, shows the ad for its VAST <Duration> (no real video), fires the
// `complete` tracking pixel and ends with ALL_ADS_COMPLETED. Errors arrive as AD_ERROR
// events with the SDK's codes (1009: empty VAST, 1012: the ad tag could not be fetched).
(function () {
  'use strict';
  function Emitter() {
    this.listeners = {};
  }
  Emitter.prototype.addEventListener = function (type, fn) {
    (this.listeners[type] = this.listeners[type] || []).push(fn);
  };
  Emitter.prototype.removeEventListener = function (type, fn) {
    this.listeners[type] = (this.listeners[type] || []).filter(function (f) {
      return f !== fn;
    });
  };
  Emitter.prototype.emit = function (type, event) {
    (this.listeners[type] || []).slice().forEach(function (fn) {
      fn(event);
    });
  };
  function inherit(Child) {
    Child.prototype = Object.create(Emitter.prototype);
    Child.prototype.constructor = Child;
  }

  var AdEvent = {
    Type: {
      LOADED: 'loaded',
      STARTED: 'start',
      IMPRESSION: 'impression',
      COMPLETE: 'complete',
      ALL_ADS_COMPLETED: 'allAdsCompleted',
    },
  };
  var AdErrorEvent = { Type: { AD_ERROR: 'adError' } };
  var AdsManagerLoadedEvent = { Type: { ADS_MANAGER_LOADED: 'adsManagerLoaded' } };
  var ViewMode = { NORMAL: 'normal', FULLSCREEN: 'fullscreen' };

  function adError(code, message) {
    var error = {
      getErrorCode: function () {
        return code;
      },
      getMessage: function () {
        return message;
      },
      toString: function () {
        return 'AdError ' + code + ': ' + message;
      },
    };
    return {
      type: AdErrorEvent.Type.AD_ERROR,
      getError: function () {
        return error;
      },
    };
  }
  function pixel(url) {
    if (url) new Image().src = url;
  }
  function text(node, selector) {
    var found = node.querySelector(selector);
    return found ? found.textContent.trim() : '';
  }
  function seconds(duration) {
    var parts = duration.split(':').map(Number);
    return parts.length === 3 ? parts[0] * 3600 + parts[1] * 60 + parts[2] : 0;
  }

  function AdDisplayContainer(container, video) {
    this.container = container;
    this.video = video;
    this.initialized = false;
  }
  AdDisplayContainer.prototype.initialize = function () {
    this.initialized = true;
  };
  AdDisplayContainer.prototype.destroy = function () {
    this.container.textContent = '';
  };

  function AdsRequest() {
    this.adTagUrl = '';
    this.linearAdSlotWidth = 640;
    this.linearAdSlotHeight = 360;
  }

  function AdsManager(display, ad) {
    Emitter.call(this);
    this.display = display;
    this.ad = ad;
    this.timer = null;
  }
  inherit(AdsManager);
  AdsManager.prototype.init = function () {
    this.ready = this.display.initialized;
  };
  AdsManager.prototype.start = function () {
    var self = this;
    if (!self.ready) {
      self.emit(AdErrorEvent.Type.AD_ERROR, adError(900, 'AdDisplayContainer.initialize() was not called'));
      return;
    }
    var box = document.createElement('div');
    box.className = 'ima-fake-ad';
    box.setAttribute('data-testid', 'ima-ad');
    self.display.container.appendChild(box);
    var left = self.ad.seconds;
    var show = function () {
      box.textContent = 'Advertisement · ' + left + ' s';
    };
    show();
    self.emit(AdEvent.Type.LOADED, { type: AdEvent.Type.LOADED });
    pixel(self.ad.impression);
    self.emit(AdEvent.Type.IMPRESSION, { type: AdEvent.Type.IMPRESSION });
    self.emit(AdEvent.Type.STARTED, { type: AdEvent.Type.STARTED });
    self.timer = setInterval(function () {
      left -= 1;
      if (left > 0) {
        show();
        return;
      }
      clearInterval(self.timer);
      box.remove();
      pixel(self.ad.complete);
      self.emit(AdEvent.Type.COMPLETE, { type: AdEvent.Type.COMPLETE });
      self.emit(AdEvent.Type.ALL_ADS_COMPLETED, { type: AdEvent.Type.ALL_ADS_COMPLETED });
    }, 1000);
  };
  AdsManager.prototype.destroy = function () {
    clearInterval(this.timer);
  };

  function AdsLoader(display) {
    Emitter.call(this);
    this.display = display;
  }
  inherit(AdsLoader);
  AdsLoader.prototype.requestAds = function (request) {
    var self = this;
    fetch(request.adTagUrl, { credentials: 'omit' })
      .then(function (response) {
        if (!response.ok) throw new Error('ad tag answered ' + response.status);
        return response.text();
      })
      .then(
        function (body) {
          var vast = new DOMParser().parseFromString(body, 'application/xml');
          var linear = vast.querySelector('Ad InLine Linear');
          if (!linear) {
            self.emit(AdErrorEvent.Type.AD_ERROR, adError(1009, 'The VAST response document is empty.'));
            return;
          }
          var complete = linear.querySelector('TrackingEvents Tracking[event="complete"]');
          var ad = {
            seconds: Math.max(1, seconds(text(linear, 'Duration'))),
            impression: text(vast, 'Ad InLine Impression'),
            complete: complete ? complete.textContent.trim() : '',
          };
          var manager = new AdsManager(self.display, ad);
          self.emit(AdsManagerLoadedEvent.Type.ADS_MANAGER_LOADED, {
            type: AdsManagerLoadedEvent.Type.ADS_MANAGER_LOADED,
            getAdsManager: function () {
              return manager;
            },
          });
        },
        function (e) {
          self.emit(AdErrorEvent.Type.AD_ERROR, adError(1012, 'The ad tag could not be fetched: ' + e.message));
        },
      );
  };
  AdsLoader.prototype.contentComplete = function () {};
  AdsLoader.prototype.destroy = function () {};

  window.google = window.google || {};
  window.google.ima = {
    VERSION: '3.fake',
    AdDisplayContainer: AdDisplayContainer,
    AdsLoader: AdsLoader,
    AdsRequest: AdsRequest,
    AdsManagerLoadedEvent: AdsManagerLoadedEvent,
    AdEvent: AdEvent,
    AdErrorEvent: AdErrorEvent,
    ViewMode: ViewMode,
  };
})();
